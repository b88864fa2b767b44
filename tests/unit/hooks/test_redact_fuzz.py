"""Fuzzing the redaction where it matters: what the hooks publish.

Secrets of every shape the rule set names (GitHub, GitLab, npm, PyPI, AWS,
JWTs with any header spacing, PEM/OpenSSH/PGP keys, Authorization headers,
credentials and webhook secrets in URLs, secret/token/password assignments)
are generated, then carried as written, base64/base64url-encoded,
percent-encoded, split over lines or wrapped in text, into every field a pod
or an image controls.  The hooks run for real (job-started, job-completed);
nothing they write (GITHUB_ENV, the step summary, the hints file, the job
record, stderr) may still hold the secret, in any of those forms.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import string
import tempfile
import urllib.parse
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flywheel_runtime.errors import FlywheelError
from flywheel_runtime.hooks.jobhooks import job_completed, job_started
from flywheel_runtime.hooks.redact import redact_text, value_is_secret

ALNUM = string.ascii_letters + string.digits
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"


def _s(alphabet: str, n: int, m: int | None = None) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=n, max_size=m if m is not None else n)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@st.composite
def jwts(draw: st.DrawFn) -> tuple[str, list[str]]:
    alg = draw(st.sampled_from(["HS256", "RS256", "ES384", "none"]))
    sep = draw(st.sampled_from(["", " ", "\n  ", "\t"]))  # spaced and pretty-printed headers too
    header = "{" + sep + f'"alg":{sep}"{alg}",{sep}"typ":{sep}"JWT"' + sep + "}"
    payload = json.dumps({"sub": draw(_s(ALNUM, 4, 20)), "iat": draw(st.integers(0, 2**31))},
                         separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))
    sig = draw(_s(B64URL, 16, 86))
    token = f"{_b64url(header.encode())}.{_b64url(payload.encode())}.{sig}"
    return token, [token, sig]


@st.composite
def private_keys(draw: st.DrawFn) -> tuple[str, list[str]]:
    kind = draw(st.sampled_from(["RSA PRIVATE KEY", "OPENSSH PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY",
                                 "ENCRYPTED PRIVATE KEY", "PGP PRIVATE KEY BLOCK"]))
    lines = draw(st.lists(_s(ALNUM + "+/", 64), min_size=2, max_size=6))
    extra = "\nVersion: GnuPG v2\n" if "PGP" in kind else "\n"
    block = f"-----BEGIN {kind}-----{extra}" + "\n".join(lines) + f"\n-----END {kind}-----"
    return block, [*lines]


@st.composite
def secrets_(draw: st.DrawFn) -> tuple[str, list[str]]:
    """(text holding the secret, the parts that must not survive)."""
    shape = draw(st.sampled_from([
        "github", "github_pat", "glpat", "gldt", "glcbt", "glrt", "glrt_routable", "glptt", "gitlab_job_url",
        "npm", "pypi", "aws_id", "aws_secret", "jwt", "key", "bearer", "basic", "slack_hook", "discord_hook",
        "generic_hook", "url_auth", "assignment"]))
    if shape == "github":
        t = draw(st.sampled_from(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"])) + draw(_s(ALNUM, 36, 40))
        return t, [t]
    if shape == "github_pat":
        t = "github_pat_" + draw(_s(ALNUM, 22)) + "_" + draw(_s(ALNUM, 59))
        return t, [t]
    if shape in ("glpat", "gldt", "glrt"):
        t = f"{shape}-" + draw(_s(B64URL, 20, 26))
        return t, [t]
    if shape == "glcbt":
        t = "glcbt-" + draw(_s(ALNUM, 1, 5)) + "_" + draw(_s(B64URL, 20))
        return t, [t]
    if shape == "glrt_routable":
        t = "glrt-t1_" + draw(_s(B64URL, 27, 40)) + "." + draw(_s("0123456789abcdefghijklmnopqrstuvwxyz", 9))
        return t, [t]
    if shape == "glptt":
        t = "glptt-" + draw(_s(HEX, 40))
        return t, [t]
    if shape == "gitlab_job_url":  # a legacy CI job token has no prefix: only its place gives it away
        tok = draw(_s(ALNUM, 20))
        return f"https://gitlab-ci-token:{tok}@gitlab.example.com/group/project.git", [tok]
    if shape == "npm":
        t = "npm_" + draw(_s(ALNUM, 36))
        return t, [t]
    if shape == "pypi":
        t = "pypi-AgEIcHlwaS5vcmc" + draw(_s(B64URL, 60, 120))
        return t, [t]
    if shape == "aws_id":
        t = draw(st.sampled_from(["AKIA", "ASIA", "AROA", "AIDA"])) + draw(_s(string.ascii_uppercase + "234567", 16))
        return t, [t]
    if shape == "aws_secret":
        v = draw(_s(ALNUM + "+/", 40))
        return f"aws_secret_access_key={v}", [v]
    if shape == "jwt":
        return draw(jwts())
    if shape == "key":
        return draw(private_keys())
    if shape == "bearer":
        t = draw(_s(B64URL + ".~", 20, 60))
        return f"Authorization: Bearer {t}", [t]
    if shape == "basic":
        cred = base64.b64encode(f"{draw(_s(ALNUM, 3, 10))}:{draw(_s(ALNUM, 12, 30))}".encode()).decode()
        return f"Authorization: Basic {cred}", [cred]
    if shape == "slack_hook":
        path = f"T{draw(_s(ALNUM, 8))}/B{draw(_s(ALNUM, 8))}/{draw(_s(ALNUM, 24))}"
        return f"https://hooks.slack.com/services/{path}", [path]
    if shape == "discord_hook":
        path = f"{draw(_s(string.digits, 18))}/{draw(_s(B64URL, 68))}"
        return f"https://discord.com/api/webhooks/{path}", [path]
    if shape == "generic_hook":
        sec = draw(_s(ALNUM, 24, 48))
        return f"https://chat.example.com/hooks/{sec}", [sec]
    if shape == "url_auth":
        user, tok = draw(_s(ALNUM, 3, 12)), draw(_s(ALNUM + "-._~", 12, 40))
        return f"{draw(st.sampled_from(['https', 'git+ssh', 'redis', 'postgres']))}://{user}:{tok}@host.example/x", [tok]
    # A generic, high-entropy assignment.
    name = draw(st.sampled_from(["secret", "token", "password", "api_key", "client_secret", "DB_PASSWORD",
                                 "access_token", "passwd"]))
    v = draw(_s(ALNUM + "!#%+/-_", 12, 40).filter(lambda x: len(set(x)) >= 8))
    op = draw(st.sampled_from(["=", ": ", " = ", '="']))
    return f"{name}{op}{v}", [v]


ENCODINGS = ("plain", "base64", "base64url", "percent", "split", "split_continued", "base64_wrapped")


def carry(text: str, how: str, cut: int) -> str:
    """``text`` the way a value may hold it."""
    if how == "base64":
        return base64.b64encode(text.encode()).decode()
    if how == "base64url":
        return base64.urlsafe_b64encode(text.encode()).decode()
    if how == "percent":
        return urllib.parse.quote(text, safe="")
    if how in ("split", "split_continued"):
        i = 1 + cut % max(1, len(text) - 1)
        return text[:i] + ("\n" if how == "split" else "\\\n    ") + text[i:]
    if how == "base64_wrapped":  # MIME-style 76-column lines
        enc = base64.b64encode(text.encode()).decode()
        return "\n".join(enc[i:i + 76] for i in range(0, len(enc), 76))
    return text


def forms(text: str, parts: list[str], carried: str) -> list[str]:
    """Every string that must not appear in what the hooks wrote."""
    out = [p for p in parts if len(p) >= 8]
    if carried != text and "\n" not in carried:
        out.append(carried)
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        out.append(enc(text.encode()).decode().rstrip("="))
    out.append(urllib.parse.quote(text, safe=""))
    return out


def _flat(text: str) -> str:
    """Line breaks (real, escaped, continued) and whitespace taken out: a split secret joined."""
    return re.sub(r"\\\\\n|\\\n|\\n|\\r|\\|\s", "", text)


def assert_gone(outputs: dict[str, str], must_not: list[str]) -> None:
    for where, text in outputs.items():
        views = [text, _flat(text), urllib.parse.unquote(text)]
        if where in ("hints", "record"):  # JSON: also the strings as a reader decodes them
            for line in text.splitlines() if where == "record" else [text]:
                if line.strip():
                    views.append(json.dumps(json.loads(line), ensure_ascii=False))
                    views.append(_flat(views[-1]))
        for secret in must_not:
            for view in views:
                assert secret not in view, f"{secret!r} survived in {where}: {text[:400]!r}"


FIELDS = ("FLYWHEEL_NODE_NAME", "FLYWHEEL_OVERLAY", "GITHUB_RUN_ID", "GITHUB_JOB", "FLYWHEEL_RUNNER_CLASS",
          "FLYWHEEL_SCALE_SET", "FLYWHEEL_HINTS_FILE", "icd_library_path", "seed_identity", "FLYWHEEL_TOPOLOGY")


def run_hooks(field: str, value: str) -> dict[str, str]:
    """job-started then job-completed with ``value`` in ``field``; everything they wrote."""
    base = Path(tempfile.mkdtemp(prefix="flywheel-fuzz-"))
    try:
        root, temp = base / "root", base / "temp"
        root.mkdir()
        temp.mkdir()
        env = {"RUNNER_TEMP": str(temp), "GITHUB_ENV": str(base / "github_env"),
               "GITHUB_STEP_SUMMARY": str(base / "summary.md"), "FLYWHEEL_NODE_NAME": "honey"}
        if field == "icd_library_path":
            icd = root / "usr" / "share" / "vulkan" / "icd.d"
            icd.mkdir(parents=True)
            (icd / "x.json").write_text(json.dumps({"ICD": {"library_path": value, "api_version": "1.3.0"}}))
        elif field == "seed_identity":
            (root / "nix").mkdir()
            (root / "nix" / ".flywheel-seed.json").write_text(json.dumps(
                {"schema": "flywheel.tinyland.dev/nix-seed/v1", "identity": value, "source": value}))
        elif field == "FLYWHEEL_HINTS_FILE":
            env[field] = str(base / "h" / f"hints-{value}.json")
        elif field == "FLYWHEEL_TOPOLOGY":
            env.update({field: str(base / f"topology-{value}.yaml"), "FLYWHEEL_SCALE_SET": "x"})
        else:
            env[field] = value
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            for hook in (job_started, job_completed):
                try:
                    hook(env=env) if hook is job_completed else hook(env=env, root=str(root))
                except FlywheelError as exc:
                    err.write(str(exc) + "\n")
        outputs = {"stderr": err.getvalue()}
        for where, path in (("github_env", base / "github_env"), ("summary", base / "summary.md"),
                            ("record", temp / "flywheel-jobs.jsonl")):
            outputs[where] = path.read_text(errors="replace") if path.exists() else ""
        hints = [p for p in base.rglob("*.json") if root not in p.parents]
        outputs["hints"] = hints[0].read_text() if hints else "{}"
        return outputs
    finally:
        shutil.rmtree(base, ignore_errors=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=secrets_(), how=st.sampled_from(ENCODINGS), cut=st.integers(0, 10_000),
       left=st.sampled_from(["", " ", "x ", "value=", "\"", "(", "url: ", "node-"]),
       right=st.sampled_from(["", " ", " tail", "\"", ")", ";", ",", "\n"]))
def test_no_secret_survives_redaction_in_any_form(secret: tuple[str, list[str]], how: str, cut: int, left: str,
                                                  right: str) -> None:
    text, parts = secret
    carried = carry(text, how, cut)
    assert value_is_secret(carried), carried
    assert_gone({"text": redact_text(left + carried + right)}, forms(text, parts, carried))


_BENIGN: list[str] = []


def _benign() -> str:
    """What the hooks write with nothing secret in any field (a generated secret that happens
    to spell FLYWHEEL_DRI_VENDORS proves nothing)."""
    if not _BENIGN:
        _BENIGN.append("\n".join(run_hooks("FLYWHEEL_NODE_NAME", "honey").values()))
    return _BENIGN[0]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=secrets_(), how=st.sampled_from(ENCODINGS), cut=st.integers(0, 10_000),
       field=st.sampled_from(FIELDS))
def test_no_secret_survives_in_any_published_field(secret: tuple[str, list[str]], how: str, cut: int,
                                                   field: str) -> None:
    text, parts = secret
    assume(not any(p in _benign() for p in parts))
    carried = carry(text, how, cut)
    outputs = run_hooks(field, carried)
    assert_gone(outputs, forms(text, parts, carried))


@given(value=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60))
@settings(max_examples=100, deadline=None)
def test_no_field_adds_a_line_to_github_env(value: str) -> None:
    """Whatever a pod puts in a field, GITHUB_ENV sets only the FLYWHEEL_* names the hooks publish."""
    for field in ("FLYWHEEL_NODE_NAME", "FLYWHEEL_HINTS_FILE"):
        outputs = run_hooks(field, value.replace("/", "_").replace("\0", ""))
        names = _runner_env_names(outputs["github_env"])
        assert all(n.startswith("FLYWHEEL_") for n in names), names
        assert len(names) == len(set(names))


def _runner_env_names(text: str) -> list[str]:
    """The names the Actions runner would set from a GITHUB_ENV file (its reading: lines split on
    \\n, a trailing \\r dropped; NAME=value, or NAME<<DELIM ... DELIM)."""
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
    names, i = [], 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        eq, hd = line.find("="), line.find("<<")
        if eq >= 0 and (hd < 0 or eq < hd):
            names.append(line[:eq])
        elif hd >= 0:
            names.append(line[:hd])
            while i < len(lines) and lines[i] != line[hd + 2:]:
                i += 1
            i += 1
        else:
            names.append(line)
    return names


def test_fuzz_helpers_see_an_unredacted_secret() -> None:
    """The checks above can fail: a secret written as is, split or encoded, is found."""
    tok = "ghp_" + "Ab1" * 12
    for how in ENCODINGS:
        carried = carry(tok, how, 7)
        try:
            assert_gone({"text": "x " + carried + " y"}, forms(tok, [tok], carried))
        except AssertionError:
            continue
        raise AssertionError(f"{how}: an unredacted secret went unnoticed")
    assert _runner_env_names("A=1\nB<<EOF\nC=2\nEOF\nD=3\r\n") == ["A", "B", "D"]
    assert os.path.basename(__file__).startswith("test_")
