"""`daylight referral keygen|verify|open`, run as a recipient runs them: a separate process, in a folder
of its own, with no data dir, no database and no DAYLIGHT_* variable in the environment."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.audit_log.checkpoint import verifier_key
from app.audit_log.cosignature import witness_verifier_key
from app.referrals import keys
from app.referrals.bundle import write_bundle
from tests.referrals.test_bundle import (
    LOG_KEY,
    ORIGIN,
    OTHER_LOG_PRIVATE,
    W1,
    W2,
    approval_proof,
    item_of,
    manifest_for,
    pattern,
)

# Nothing of a deployment: no DAYLIGHT_* variable, no env file, no HOME to find one in.
ENV = {"PATH": "/usr/bin:/bin"}
VERIFIER_KEY = verifier_key(LOG_KEY.public_key, ORIGIN)
WITNESS_OPTIONS = ("--witness-key", witness_verifier_key(W1.public_key, W1.name))
WITNESS_OPTIONS += ("--witness-key", witness_verifier_key(W2.public_key, W2.name))
CONTENTS = {
    "reports/R-7QX2/narrative.txt": "What happened, in the submitter's words — ünïcode.\n".encode(),
    "reports/R-7QX2/photo.jpg": pattern(300_000, "photo"),
    "case/C-4F7K/summary.md": b"# Summary\n",
}


def daylight(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass(frozen=True)
class Recipient:
    home: Path
    fingerprint: str
    keygen: subprocess.CompletedProcess[str]

    @property
    def key(self) -> str:
        return str(self.home / "partner.key")


@dataclass(frozen=True)
class Sent:
    path: Path
    referral_id: str


def make_recipient(home: Path, name: str) -> Recipient:
    home.mkdir()
    result = daylight(
        home,
        "referral",
        "keygen",
        "--name",
        name,
        "--private-key",
        "partner.key",
        "--public-key",
        "partner.pub",
    )
    public = keys.parse_public_key((home / "partner.pub").read_text(encoding="utf-8"))
    return Recipient(home, public.fingerprint, result)


def send(path: Path, recipient_public: Path, **proof_options: Any) -> Sent:
    """What the server does on approval: a manifest, the approval's proof, the bundle sealed to the key."""
    public = keys.parse_public_key(recipient_public.read_text(encoding="utf-8"))
    referral_id = str(uuid.uuid4())
    items = [item_of(name, data) for name, data in CONTENTS.items()]
    manifest = manifest_for(referral_id, items, [public.fingerprint])
    proof = approval_proof(manifest, referral_id, [public.fingerprint], **proof_options)
    with path.open("wb") as sink:
        write_bundle(
            sink,
            bundle_id=uuid.uuid4(),
            manifest=manifest,
            proof=proof,
            items=items,
            recipients=[public.public_key],
        )
    return Sent(path, referral_id)


@pytest.fixture(scope="module")
def partner(tmp_path_factory: pytest.TempPathFactory) -> Recipient:
    return make_recipient(tmp_path_factory.mktemp("partner") / "home", "Example Refugee Council")


@pytest.fixture(scope="module")
def sent(partner: Recipient, tmp_path_factory: pytest.TempPathFactory) -> Sent:
    return send(
        tmp_path_factory.mktemp("outbox") / "referral.daylight-referral", partner.home / "partner.pub"
    )


def verify(cwd: Path, recipient: Recipient, bundle: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return daylight(
        cwd, "referral", "verify", str(bundle), "--key", recipient.key, "--verifier-key", VERIFIER_KEY, *extra
    )


def open_into(
    cwd: Path, recipient: Recipient, bundle: Path, output: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return daylight(
        cwd,
        "referral",
        "open",
        str(bundle),
        "--key",
        recipient.key,
        "--verifier-key",
        VERIFIER_KEY,
        *WITNESS_OPTIONS,
        "--output",
        str(output),
        *extra,
    )


# --- keygen ---------------------------------------------------------------------------------------------


def test_keygen_writes_two_files_and_prints_the_fingerprint(partner: Recipient) -> None:
    assert partner.keygen.returncode == 0, partner.keygen.stderr
    assert partner.keygen.stdout.splitlines()[0] == f"fingerprint: {partner.fingerprint}"
    assert sorted(p.name for p in partner.home.iterdir()) == ["partner.key", "partner.pub"]
    assert (partner.home / "partner.key").stat().st_mode & 0o777 == 0o600
    private_key = keys.read_private_key(partner.home / "partner.key")
    assert keys.fingerprint(private_key.public_key()) == partner.fingerprint
    assert keys.parse_public_key((partner.home / "partner.pub").read_text()).name == "Example Refugee Council"
    # The private key is never printed.
    assert (partner.home / "partner.key").read_text().split("\n")[1] not in partner.keygen.stdout


def test_keygen_never_overwrites_a_key(partner: Recipient) -> None:
    before = (partner.home / "partner.key").read_bytes()
    result = daylight(
        partner.home,
        "referral",
        "keygen",
        "--name",
        "Other",
        "--private-key",
        "partner.key",
        "--public-key",
        "new.pub",
    )
    assert result.returncode == 1
    assert "never overwritten" in result.stderr
    assert (partner.home / "partner.key").read_bytes() == before
    assert not (partner.home / "new.pub").exists()


def test_keygen_refuses_a_name_with_a_line_break(tmp_path: Path) -> None:
    result = daylight(
        tmp_path, "referral", "keygen", "--name", "Two\nlines", "--private-key", "k", "--public-key", "p"
    )
    assert result.returncode == 2
    assert list(tmp_path.iterdir()) == []


# --- verify ---------------------------------------------------------------------------------------------


def test_verify_says_ok_with_a_summary(partner: Recipient, sent: Sent, tmp_path: Path) -> None:
    result = verify(tmp_path, partner, sent.path, *WITNESS_OPTIONS)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"ok: referral {sent.referral_id}, approved 2026-01-01T12:00:04.004000Z in the audit log {ORIGIN}; "
        f"3 items, 300.1 KB; witnessed by: {W1.name}, {W2.name}\n"
    )
    assert list(tmp_path.iterdir()) == []  # no data dir, no database, nothing written


def test_verify_requires_the_witnesses_named(partner: Recipient, tmp_path: Path) -> None:
    one_witness = send(tmp_path / "b", partner.home / "partner.pub", witnesses=[])
    result = verify(tmp_path, partner, one_witness.path, *WITNESS_OPTIONS)
    assert result.returncode == 1
    assert "0 of the trusted witnesses cosigned the checkpoint; 2 are required" in result.stderr
    assert verify(tmp_path, partner, one_witness.path).returncode == 0


def test_verify_names_the_problems_of_a_tampered_bundle(
    partner: Recipient, sent: Sent, tmp_path: Path
) -> None:
    data = bytearray(sent.path.read_bytes())
    data[-200] ^= 0x01
    tampered = tmp_path / "tampered"
    tampered.write_bytes(bytes(data))
    result = verify(tmp_path, partner, tampered, *WITNESS_OPTIONS)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "INVALID: the referral bundle does not verify",
        "  - the index does not open: the bundle was altered or damaged",
    ]


def test_verify_refuses_a_proof_from_another_log(partner: Recipient, tmp_path: Path) -> None:
    forged = send(tmp_path / "b", partner.home / "partner.pub", log_private=OTHER_LOG_PRIVATE)
    result = verify(tmp_path, partner, forged.path, *WITNESS_OPTIONS)
    assert result.returncode == 1
    assert f"audit proof: the checkpoint is not signed by the log {ORIGIN}" in result.stderr


def test_verify_with_a_key_the_bundle_is_not_sealed_to(sent: Sent, tmp_path: Path) -> None:
    stranger = make_recipient(tmp_path / "stranger", "Stranger")
    result = verify(tmp_path, stranger, sent.path, *WITNESS_OPTIONS)
    assert result.returncode == 1
    assert "  - this bundle is not sealed to this key" in result.stderr
    assert f"this key's fingerprint:  {stranger.fingerprint}" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("missing.daylight-referral",), "cannot read missing.daylight-referral"),
        (("--verifier-key", "not a key"), "verifier key"),
        (("--witnesses-required", "3", *WITNESS_OPTIONS), "--witnesses-required must be from 0 to"),
        (("--key", "missing.key"), "cannot read missing.key"),
        (("--key", "PUBLIC"), "this is a public key file"),
    ],
)
def test_verify_usage_mistakes_exit_2(
    partner: Recipient, sent: Sent, tmp_path: Path, arguments: tuple[str, ...], message: str
) -> None:
    bundle = arguments[0] if not arguments[0].startswith("--") else str(sent.path)
    options = [argument for argument in arguments if argument != bundle]
    options = [str(partner.home / "partner.pub") if option == "PUBLIC" else option for option in options]
    result = daylight(
        tmp_path, "referral", "verify", bundle, "--key", partner.key, "--verifier-key", VERIFIER_KEY, *options
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


# --- open -----------------------------------------------------------------------------------------------


def test_open_extracts_the_items_and_prints_a_summary(partner: Recipient, sent: Sent, tmp_path: Path) -> None:
    output = tmp_path / "referral"
    result = open_into(tmp_path, partner, sent.path, output)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"ok: referral {sent.referral_id} verified and opened into {output}"
    assert f"  from the audit log:  {ORIGIN}" in lines
    approved = "2026-01-01T12:00:04.004000Z, in the log's checkpoint signed 2026-01-01T12:00:00Z"
    assert f"  approved:            {approved}" in lines
    assert f"  witnessed by:        {W1.name}, {W2.name}" in lines
    assert "  case:                C-4F7K — Surveillance of a diaspora association" in lines
    assert "  people:              proposed by amira, approved by lead-jo" in lines
    assert "  items (3, 300.1 KB):" in lines
    assert "      300.0 KB  reports/R-7QX2/photo.jpg" in lines
    assert "  redactions:          1" in lines
    assert "    - station: Rotterdam, relation: reported near" in lines
    assert "    For your unit's review." in lines
    for name, data in CONTENTS.items():
        assert (output / name).read_bytes() == data
    manifest = json.loads((output / "manifest.json").read_bytes())
    assert manifest["referral_id"] == sent.referral_id


def test_the_extracted_proof_verifies_with_audit_verify(
    partner: Recipient, sent: Sent, tmp_path: Path
) -> None:
    assert open_into(tmp_path, partner, sent.path, tmp_path / "out").returncode == 0
    result = daylight(
        tmp_path,
        "audit",
        "verify",
        "--proof",
        str(tmp_path / "out" / "audit-proof.json"),
        "--verifier-key",
        VERIFIER_KEY,
        *WITNESS_OPTIONS,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: event 4 is in the log at size 6")


def test_open_writes_nothing_from_a_tampered_bundle(partner: Recipient, sent: Sent, tmp_path: Path) -> None:
    data = bytearray(sent.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered = tmp_path / "tampered"
    tampered.write_bytes(bytes(data))
    result = open_into(tmp_path, partner, tampered, tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.startswith("INVALID: the referral bundle does not verify\n")
    assert not (tmp_path / "out").exists()


def test_open_refuses_a_folder_that_is_not_empty(partner: Recipient, sent: Sent, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    result = open_into(tmp_path, partner, sent.path, tmp_path / "out")
    assert result.returncode == 2
    assert "is not empty" in result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]
