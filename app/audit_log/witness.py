"""The witness core: C2SP tlog-witness ``add-checkpoint`` checks as pure functions, and the witness's state.

A witness is the answer to a log operator who shows different histories to different people (a split
view), or quietly rewrites one: someone outside the operator's control remembers the last checkpoint it saw
and cosigns a new one only if the log proves the new tree extends the old one. Readers who require
cosignatures (app.audit_log.evidence) then only accept trees the witnesses saw grow append-only.

Ours is run by an auditor or a partner organisation on their own machine, as a command: it fetches from the
log server a body in exactly the c2sp.org/tlog-witness ``add-checkpoint`` request format::

    old <size the witness last cosigned>
    <base64 consistency-proof hash>          (zero to 63 lines)

    <signed checkpoint note>

checks it against its state with ``add_checkpoint``, saves the new state with ``save_state`` and only then
releases the cosignature line. Nothing here touches the network, a database or the clock: ``now`` is an
argument.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit_log.checkpoint import (
    MAX_NUMBER,
    ROOT_HASH_SIZE,
    Checkpoint,
    CheckpointError,
    VerifierKey,
    _check_key_name,
    _decode_canonical_base64,
    _parse_body,
    _parse_canonical_decimal,
    _split_signed_note,
    open_signed_checkpoint,
    parse_verifier_key,
    verifier_key,
)
from app.audit_log.cosignature import cosign
from app.audit_log.merkle import HASH_SIZE, verify_consistency

# The spec's limit: a consistency proof between trees below 2^63 leaves never needs more hashes.
MAX_CONSISTENCY_PROOF_LINES = 63
# A hostile server could send an endless body. The largest honest request is 63 proof lines and a note of
# at most MAX_SIGNATURE_LINES signature lines, far below this; the CLI should cap its read here too.
MAX_REQUEST_CHARS = 1 << 20
STATE_VERSION = 1

_OLD_SIZE_PREFIX = "old "
_STATE_FIELDS = frozenset(
    {"version", "log_origin", "log_verifier_key", "tree_size", "root_hash", "signed_note"}
)

RefusalKind = Literal["rollback", "fork", "bad_signature", "bad_proof", "old_size_mismatch", "wrong_log"]


class WitnessRequestError(ValueError):
    """An ``add-checkpoint`` request body is malformed (the spec's "400 Bad Request")."""


class WitnessStateError(ValueError):
    """A witness state file is unreadable, corrupt or inconsistent; never guess a state to replace it."""


class WitnessRefusal(Exception):
    """The witness will not cosign this checkpoint.

    ``kind`` says why; ``message`` says it for a person. ``evidence`` holds the log-signed notes that show
    the problem: the witness's previous checkpoint (when it has one) and the new one, but only when the new
    one's log signature verified. A note nobody signed proves nothing about the log, so for
    ``bad_signature`` and ``wrong_log`` it is left out. For ``old_size_mismatch``, ``expected_old_size``
    is the size the witness last cosigned, to retry with (the spec's 409 response body).
    """

    def __init__(
        self,
        kind: RefusalKind,
        message: str,
        evidence: Iterable[str] = (),
        *,
        expected_old_size: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: RefusalKind = kind
        self.message = message
        self.evidence = list(evidence)
        self.expected_old_size = expected_old_size


# --- The add-checkpoint request ------------------------------------------------------------------------


def build_add_checkpoint_request(old_size: int, proof: Sequence[bytes], signed_note: str) -> str:
    """The ``add-checkpoint`` body: ``old <size>``, one base64 line per proof hash, a blank line, the note.

    Raises WitnessRequestError for anything ``parse_add_checkpoint_request`` would refuse.
    """
    if isinstance(old_size, bool) or not isinstance(old_size, int) or not 0 <= old_size <= MAX_NUMBER:
        raise WitnessRequestError(f"the old size must be an integer from 0 to {MAX_NUMBER}")
    hashes = list(proof)
    if len(hashes) > MAX_CONSISTENCY_PROOF_LINES:
        raise WitnessRequestError(f"a consistency proof has at most {MAX_CONSISTENCY_PROOF_LINES} hashes")
    if old_size == 0 and hashes:
        raise WitnessRequestError("the consistency proof from size 0 is empty")
    if not all(isinstance(node, bytes) and len(node) == HASH_SIZE for node in hashes):
        raise WitnessRequestError(f"every consistency-proof hash is {HASH_SIZE} bytes")
    request = "".join(
        [
            f"{_OLD_SIZE_PREFIX}{old_size}\n",
            *(base64.b64encode(node).decode("ascii") + "\n" for node in hashes),
            "\n",
            signed_note,
        ]
    )
    parse_add_checkpoint_request(request)  # the note's form, and that the two functions stay inverses
    return request


def parse_add_checkpoint_request(text: str) -> tuple[int, list[bytes], str]:
    """(old size, consistency proof, signed note) of an ``add-checkpoint`` body.

    Strict, because the body comes from the server the witness is there to distrust: a canonical decimal
    old size, at most 63 canonical-base64 32-byte hashes, the blank line, then a well-formed signed note
    holding a well-formed checkpoint. Signatures and the proof are *not* checked here (``add_checkpoint``
    does), nor is old size <= checkpoint size, which ``add_checkpoint`` reports as a rollback or an old
    size mismatch. Raises WitnessRequestError.
    """
    if not isinstance(text, str):
        raise WitnessRequestError("an add-checkpoint request is text")
    if len(text) > MAX_REQUEST_CHARS:
        raise WitnessRequestError(f"the request is longer than {MAX_REQUEST_CHARS} characters")
    old_line, newline, rest = text.partition("\n")
    if not newline or not old_line.startswith(_OLD_SIZE_PREFIX):
        raise WitnessRequestError("the request does not start with an 'old <size>' line")
    try:
        old_size = _parse_canonical_decimal(old_line[len(_OLD_SIZE_PREFIX) :], "the old size")
    except CheckpointError as exc:
        raise WitnessRequestError(str(exc)) from None
    proof: list[bytes] = []
    while True:
        line, newline, rest = rest.partition("\n")
        if not newline:
            raise WitnessRequestError("the request has no blank line between the proof and the checkpoint")
        if not line:
            break
        if len(proof) == MAX_CONSISTENCY_PROOF_LINES:
            raise WitnessRequestError(f"more than {MAX_CONSISTENCY_PROOF_LINES} consistency-proof lines")
        try:
            node = _decode_canonical_base64(line, f"consistency-proof line {len(proof) + 1}")
        except CheckpointError as exc:
            raise WitnessRequestError(str(exc)) from None
        if len(node) != HASH_SIZE:
            raise WitnessRequestError(
                f"consistency-proof line {len(proof) + 1} is not a {HASH_SIZE}-byte hash"
            )
        proof.append(node)
    _checkpoint_claimed_by(rest)
    return old_size, proof, rest


def _checkpoint_claimed_by(signed_note: str) -> Checkpoint:
    """The checkpoint a note *claims*, signature unchecked: only for routing (which origin?) and form."""
    try:
        text, _ = _split_signed_note(signed_note)
        return _parse_body(text)
    except CheckpointError as exc:
        raise WitnessRequestError(f"the request's checkpoint is malformed: {exc}") from None


# --- Witness state ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WitnessState:
    """What a witness remembers about the one log it follows: the log's pinned key, and the last checkpoint
    it verified and cosigned, with the signed note itself kept as evidence.

    Construction checks that the pieces agree (the note opens under the pinned key and origin, and has
    this size and root), so a state can never be assembled, or loaded, from parts that do not. Raises
    WitnessStateError.
    """

    log_origin: str
    log_verifier_key: str
    tree_size: int
    root_hash: bytes
    signed_note: str

    def __post_init__(self) -> None:
        try:
            _check_key_name(self.log_origin, "the log origin")
            key = parse_verifier_key(self.log_verifier_key)
            if key.name != self.log_origin:
                raise WitnessStateError(
                    f"the pinned log key is named {key.name!r}, not the log origin {self.log_origin!r}"
                )
            checkpoint = open_signed_checkpoint(self.signed_note, key.public_key, origin=self.log_origin)
        except CheckpointError as exc:
            raise WitnessStateError(f"the witness state is inconsistent: {exc}") from None
        if (checkpoint.tree_size, checkpoint.root_hash) != (self.tree_size, self.root_hash):
            raise WitnessStateError("the witness state's size and root are not those of its signed note")

    def pinned_log_key(self) -> VerifierKey:
        """The log key this witness was first configured with."""
        return parse_verifier_key(self.log_verifier_key)


def save_state(path: str | os.PathLike[str], state: WitnessState) -> None:
    """Write ``state`` to ``path`` atomically and durably.

    A crash at any point leaves either the old file or the new one, never a torn one: the JSON goes to a
    temporary file in the same directory (mode 0600), is fsynced, renamed over ``path`` with ``os.replace``,
    and the directory is fsynced so the rename itself survives a power cut. A witness that lost its state
    would cosign whatever the log shows it next, which is exactly the rewrite it exists to catch.
    """
    target = Path(path)
    directory = target.parent
    document = {
        "version": STATE_VERSION,
        "log_origin": state.log_origin,
        "log_verifier_key": state.log_verifier_key,
        "tree_size": state.tree_size,
        "root_hash": base64.b64encode(state.root_hash).decode("ascii"),
        "signed_note": state.signed_note,
    }
    payload = (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    descriptor, temporary_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as temporary:
            os.fchmod(temporary.fileno(), 0o600)  # mkstemp already does; say it where it matters
            temporary.write(payload)
            temporary.flush()
            os.fsync(temporary.fileno())
        os.replace(temporary_name, target)
    except BaseException:
        Path(temporary_name).unlink(missing_ok=True)
        raise
    directory_descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(directory_descriptor)
    finally:
        os.close(directory_descriptor)


def load_state(path: str | os.PathLike[str]) -> WitnessState | None:
    """The state saved at ``path``, or None if there is no file (a witness that never cosigned).

    Raises WitnessStateError for a file that exists but is not a valid state: unreadable JSON, a missing or
    unknown field, an unknown version, or a note that does not open under the pinned key with the recorded
    size and root. Never treat that as "no state": starting over would let the log present any history.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    try:
        document = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and json.JSONDecodeError alike
        raise WitnessStateError(f"the witness state file {os.fspath(path)!r} is not JSON") from None
    if not isinstance(document, dict) or set(document) != _STATE_FIELDS:
        raise WitnessStateError(
            f"the witness state file {os.fspath(path)!r} does not have exactly the fields "
            f"{', '.join(sorted(_STATE_FIELDS))}"
        )
    version = document["version"]
    if isinstance(version, bool) or version != STATE_VERSION:
        raise WitnessStateError(
            f"the witness state file has version {version!r:.40}; this program reads {STATE_VERSION}"
        )
    tree_size, root_text = document["tree_size"], document["root_hash"]
    origin, key_text, note = document["log_origin"], document["log_verifier_key"], document["signed_note"]
    if isinstance(tree_size, bool) or not isinstance(tree_size, int) or not 0 <= tree_size <= MAX_NUMBER:
        raise WitnessStateError("the witness state's tree size is not a valid size")
    if not all(isinstance(value, str) for value in (root_text, origin, key_text, note)):
        raise WitnessStateError("the witness state's origin, key, root and note must be text")
    try:
        root_hash = _decode_canonical_base64(root_text, "the witness state's root hash")
    except CheckpointError as exc:
        raise WitnessStateError(str(exc)) from None
    if len(root_hash) != ROOT_HASH_SIZE:
        raise WitnessStateError(f"the witness state's root hash is not {ROOT_HASH_SIZE} bytes")
    return WitnessState(
        log_origin=origin,
        log_verifier_key=key_text,
        tree_size=tree_size,
        root_hash=root_hash,
        signed_note=note,
    )


# --- add-checkpoint --------------------------------------------------------------------------------------


def _same_key(first: VerifierKey, second: VerifierKey) -> bool:
    return first.name == second.name and (
        first.public_key.public_bytes_raw() == second.public_key.public_bytes_raw()
    )


def add_checkpoint(
    state: WitnessState | None,
    request_text: str,
    log_key: VerifierKey,
    witness_private_key: Ed25519PrivateKey,
    witness_name: str,
    now: int,
) -> tuple[WitnessState, str]:
    """Check an ``add-checkpoint`` request against ``state``; return the new state and a cosignature line.

    The checks of c2sp.org/tlog-witness, in its order:

    1. the checkpoint is for the log this witness follows (``wrong_log``): its origin is ``log_key.name``,
       and a saved state was made for this same pinned key (a changed key needs a deliberate new state);
    2. it is signed by ``log_key`` (``bad_signature``); other signature lines are ignored;
    3. it is not smaller than the checkpoint last cosigned (``rollback``);
    4. the request's old size is the size last cosigned, 0 with no state (``old_size_mismatch``, with
       ``expected_old_size`` for the retry);
    5. the proof is empty from size 0 and between equal sizes (``bad_proof``);
    6. at equal sizes the roots are equal, and otherwise the proof shows the last cosigned tree is a
       prefix of the new one (``fork``: the log's history differs from the one this witness saw).

    With no state, any log-signed checkpoint is accepted (trust on first use): the first cosignature pins
    the history from then on. The same size and root again is fine and earns a fresh cosignature.

    The caller MUST save the returned state (``save_state``) BEFORE releasing the cosignature line, and must
    not run two ``add_checkpoint`` calls on one state file concurrently. C2SP requires persisting before
    responding: a cosignature released for a state that was then lost (a crash, a full disk) lets the next
    run cosign a tree inconsistent with it, and a witness that cosigns two inconsistent views is useless.

    Raises WitnessRequestError for a malformed body, WitnessRefusal when a check fails.
    """
    old_size, proof, signed_note = parse_add_checkpoint_request(request_text)
    claimed = _checkpoint_claimed_by(signed_note)
    if state is not None and not _same_key(state.pinned_log_key(), log_key):
        configured = verifier_key(log_key.public_key, log_key.name)
        raise WitnessRefusal(
            "wrong_log", f"this witness state follows the log key {state.log_verifier_key}, not {configured}"
        )
    if claimed.origin != log_key.name:
        raise WitnessRefusal(
            "wrong_log",
            f"the checkpoint is for origin {claimed.origin!r}; this witness follows {log_key.name!r}",
        )
    try:
        checkpoint = open_signed_checkpoint(signed_note, log_key.public_key, origin=log_key.name)
    except CheckpointError as exc:
        raise WitnessRefusal(
            "bad_signature", f"the checkpoint is not validly signed by the log: {exc}"
        ) from None

    evidence = [signed_note] if state is None else [state.signed_note, signed_note]
    witnessed_size = 0 if state is None else state.tree_size
    if checkpoint.tree_size < witnessed_size:
        raise WitnessRefusal(
            "rollback",
            f"the log signed a tree of {checkpoint.tree_size} leaves as its latest, but this witness already "
            f"cosigned {witnessed_size} leaves: the log is presenting a shorter history",
            evidence,
        )
    if old_size != witnessed_size:
        raise WitnessRefusal(
            "old_size_mismatch",
            f"the request proves consistency from size {old_size}, but this witness last cosigned size "
            f"{witnessed_size}: ask the log for a proof from {witnessed_size}",
            evidence,
            expected_old_size=witnessed_size,
        )
    if proof and (old_size == 0 or old_size == checkpoint.tree_size):
        raise WitnessRefusal(
            "bad_proof",
            f"the consistency proof from size {old_size} to {checkpoint.tree_size} must be empty",
            evidence,
        )
    if state is not None:
        if checkpoint.tree_size == state.tree_size and checkpoint.root_hash != state.root_hash:
            raise WitnessRefusal(
                "fork",
                f"the log signed two different trees of {state.tree_size} leaves: its history was rewritten "
                "or it shows different histories to different people",
                evidence,
            )
        if not verify_consistency(
            state.tree_size, checkpoint.tree_size, state.root_hash, checkpoint.root_hash, proof
        ):
            raise WitnessRefusal(
                "fork",
                f"the log did not prove that its tree of {checkpoint.tree_size} leaves extends the tree of "
                f"{state.tree_size} leaves this witness cosigned: its history may have been rewritten",
                evidence,
            )
    new_state = WitnessState(
        log_origin=log_key.name,
        log_verifier_key=(
            verifier_key(log_key.public_key, log_key.name) if state is None else state.log_verifier_key
        ),
        tree_size=checkpoint.tree_size,
        root_hash=checkpoint.root_hash,
        signed_note=signed_note,
    )
    return new_state, cosign(checkpoint, witness_private_key, witness_name, now)
