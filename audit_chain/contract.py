"""The AuditAnchor contract: Vyper source, committed build artefact, rebuild.

This module owns ``contracts/AuditAnchor.vy`` and its compiled artefact
``contracts/AuditAnchor.json`` (ABI, deploy and runtime bytecode, compiler
version and settings, source SHA-256). The artefact is committed so the service
and auditors deploy and read the exact bytecode that was reviewed; a test
recompiles the source with the pinned vyper and compares.

Rebuild after editing the source (needs the ``vyper`` dev dependency)::

    python -m audit_chain.contract
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from audit_chain.errors import AuditChainError

__all__ = [
    "ARTIFACT_PATH",
    "EVM_VERSION",
    "SOURCE_PATH",
    "VYPER_VERSION",
    "ContractArtifact",
    "compile_artifact",
    "load_artifact",
]

_DIR: Final = Path(__file__).resolve().parent / "contracts"
SOURCE_PATH: Final = _DIR / "AuditAnchor.vy"
ARTIFACT_PATH: Final = _DIR / "AuditAnchor.json"
VYPER_VERSION: Final = "0.4.3"
#: Cancun is supported by Ethereum mainnet and the common L2s and by anvil.
EVM_VERSION: Final = "cancun"
OPTIMIZE: Final = "gas"


@dataclass(frozen=True)
class ContractArtifact:
    contract_name: str
    abi: list[dict[str, Any]]
    bytecode: str
    bytecode_runtime: str
    compiler: str
    evm_version: str
    optimize: str
    source_sha256: str

    def to_json(self) -> str:
        return (
            json.dumps(
                {
                    "contractName": self.contract_name,
                    "abi": self.abi,
                    "bytecode": self.bytecode,
                    "bytecodeRuntime": self.bytecode_runtime,
                    "compiler": self.compiler,
                    "evmVersion": self.evm_version,
                    "optimize": self.optimize,
                    "sourceSha256": self.source_sha256,
                },
                indent=2,
                sort_keys=True,
            )
            + "\n"
        )


def load_artifact(path: Path = ARTIFACT_PATH) -> ContractArtifact:
    """The committed artefact."""
    try:
        obj = json.loads(path.read_text("utf-8"))
        return ContractArtifact(
            contract_name=obj["contractName"],
            abi=obj["abi"],
            bytecode=obj["bytecode"],
            bytecode_runtime=obj["bytecodeRuntime"],
            compiler=obj["compiler"],
            evm_version=obj["evmVersion"],
            optimize=obj["optimize"],
            source_sha256=obj["sourceSha256"],
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AuditChainError(
            f"cannot load contract artefact {path}: {e}", code="contract.artifact"
        ) from e


def compile_artifact(source_path: Path = SOURCE_PATH) -> ContractArtifact:
    """Compile the Vyper source with the pinned compiler and settings."""
    try:
        import vyper
        from vyper.compiler import compile_code
        from vyper.compiler.settings import OptimizationLevel, Settings
    except ImportError as e:
        raise AuditChainError(
            "vyper is not installed (pip install vyper==0.4.3)", code="contract.compiler"
        ) from e
    version = str(vyper.__version__)
    if version.split("+")[0] != VYPER_VERSION:
        raise AuditChainError(
            f"vyper {version} found, the artefact is built with {VYPER_VERSION}",
            code="contract.compiler",
        )
    source = source_path.read_text("utf-8")
    out = compile_code(
        source,
        output_formats=["abi", "bytecode", "bytecode_runtime"],
        settings=Settings(
            evm_version=EVM_VERSION, optimize=OptimizationLevel.from_string(OPTIMIZE)
        ),
    )
    return ContractArtifact(
        contract_name="AuditAnchor",
        abi=out["abi"],
        bytecode=out["bytecode"],
        bytecode_runtime=out["bytecode_runtime"],
        compiler=f"vyper {VYPER_VERSION}",
        evm_version=EVM_VERSION,
        optimize=OPTIMIZE,
        source_sha256=hashlib.sha256(source.encode("utf-8")).hexdigest(),
    )


def main() -> None:
    ARTIFACT_PATH.write_text(compile_artifact().to_json(), "utf-8")
    print(f"wrote {ARTIFACT_PATH}")


if __name__ == "__main__":
    main()
