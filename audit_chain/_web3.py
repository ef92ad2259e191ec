"""web3.py, imported so that importing it changes nothing process-wide.

web3 imports eth_account, which imports eth_keyfile, which imports
`py_ecc.bls`; `py_ecc`'s package `__init__` raises `sys.setrecursionlimit`
to 100,000 at import. Under that limit a deeply nested input to any
recursive parser of the process (`json`, asn1crypto, pyHanko) no longer
raises `RecursionError`: it overflows the C stack and the process dies with a
segmentation fault. So audit_chain imports web3 here, once, and puts the
limit back; every other module takes web3 from this one. (Nothing audit_chain
does needs py_ecc: transactions are signed with secp256k1, never BLS.)
"""

import sys

_limit = sys.getrecursionlimit()
try:
    from web3 import AsyncHTTPProvider, AsyncWeb3
    from web3.exceptions import (
        ContractLogicError,
        ProviderConnectionError,
        TimeExhausted,
        TransactionNotFound,
        Web3Exception,
        Web3RPCError,
    )
finally:
    sys.setrecursionlimit(_limit)

__all__ = [
    "AsyncHTTPProvider",
    "AsyncWeb3",
    "ContractLogicError",
    "ProviderConnectionError",
    "TimeExhausted",
    "TransactionNotFound",
    "Web3Exception",
    "Web3RPCError",
]
