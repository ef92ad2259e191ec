"""Token objects made by one process are seen by another, whatever either
writes in between (SoftHSM2's generation counter, `hsm_bridge.session`).

Two real processes on the session's SoftHSM2 token, each with its own
module instance, as two `cloudsign serve` workers are. In each round B looks
at the token, A creates a transport key, B creates one (a write of its own),
then each destroys the other's key: found means it was seen.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from pathlib import Path
from typing import Any

import pytest

from cloudsign.instance import prepare_hsm
from cloudsign.settings import Settings

ROUNDS = 5
ANSWER_TIMEOUT = 120.0


def _process(
    hsm_dir: str, module: str, label: str, pin: str, serialise: bool, inbox: Any, outbox: Any
) -> None:
    from hsm_bridge import HsmBridge, Secret, session, softhsm

    softhsm.configure(Path(hsm_dir))
    loop = asyncio.new_event_loop()
    bridge = HsmBridge(module, label, Secret(pin))
    # Started under the lock either way (a login racing the session's own
    # writers can fail); only the writes of the rounds go without it.
    loop.run_until_complete(bridge.start())
    if not serialise:
        session.serialise_token_writes(None)
    try:
        while (command := inbox.get()) is not None:
            op, key_id = command
            if op == "create":
                loop.run_until_complete(bridge.create_transport_key(key_id))
                outbox.put(True)
            elif op == "destroy":
                outbox.put(loop.run_until_complete(bridge.destroy_transport_key(key_id)))
            else:  # "look": any search of the token
                loop.run_until_complete(bridge.ping())
                outbox.put(True)
    finally:
        loop.run_until_complete(bridge.close())
        loop.close()


def _rounds(settings: Settings, *, serialise: bool) -> int:
    """How many rounds one process missed the other's new key."""
    access = prepare_hsm(settings)
    ctx = multiprocessing.get_context("spawn")
    channels = [(ctx.Queue(), ctx.Queue()) for _ in range(2)]
    procs = [
        ctx.Process(
            target=_process,
            args=(
                str(settings.hsm_dir),
                access.module,
                access.token_label,
                access.pin.reveal(),
                serialise,
                inbox,
                outbox,
            ),
            daemon=True,
        )
        for inbox, outbox in channels
    ]
    for p in procs:
        p.start()
    (a_in, a_out), (b_in, b_out) = channels

    def ask(inbox: Any, outbox: Any, op: str, key_id: str = "") -> Any:
        inbox.put((op, key_id))
        return outbox.get(timeout=ANSWER_TIMEOUT)

    missed = 0
    try:
        for _ in range(ROUNDS):
            a_key, b_key = f"test-a-{uuid.uuid4()}", f"test-b-{uuid.uuid4()}"
            ask(b_in, b_out, "look")
            ask(a_in, a_out, "create", a_key)
            ask(b_in, b_out, "create", b_key)
            b_saw = ask(b_in, b_out, "destroy", a_key)
            a_saw = ask(a_in, a_out, "destroy", b_key)
            if not (a_saw and b_saw):
                missed += 1
            # Whatever was not seen is still there: its maker removes it.
            ask(a_in, a_out, "destroy", a_key)
            ask(b_in, b_out, "destroy", b_key)
    finally:
        for inbox, _ in channels:
            inbox.put(None)
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return missed


@pytest.mark.xdist_group("token_writes")
def test_a_key_made_by_one_process_is_seen_by_another_after_its_own_write(
    base_settings: Settings,
) -> None:
    assert _rounds(base_settings, serialise=True) == 0


@pytest.mark.xdist_group("token_writes")
def test_without_the_write_lock_softhsm2_loses_the_other_processes_key(
    base_settings: Settings,
) -> None:
    """The fault the lock is there for, on the SoftHSM2 these tests run: if a
    newer SoftHSM2 no longer shows it, this fails and the lock may go."""
    assert _rounds(base_settings, serialise=False) == ROUNDS
