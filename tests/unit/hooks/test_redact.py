from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel_runtime.hooks.redact import (
    REDACTED,
    name_is_secret,
    redact_env_text,
    redact_text,
    redact_value,
    redacted_environ,
    value_is_secret,
)
from flywheel_runtime.probe import collect, to_env

SECRET_VALUES = [
    "ghp_" + "a1B2" * 9, "gho_" + "Z" * 36, "ghs_" + "B" * 36, "ghu_" + "c" * 36, "ghr_" + "d" * 36,
    "github_pat_11ABCDEFG0" + "x" * 60,
    "glpat-" + "AbCdEfGhIjKlMnOpQrSt", "npm_" + "a" * 36, "pypi-AgEIcHlwaS5vcmc" + "x" * 60,
    "dckr_pat_" + "q" * 27,
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A", "AIza" + "S" * 35, "xoxb-1234567890-abcdefghij",
    "https://user:hunter2@example.com/repo.git", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA\n"
    "-----END OPENSSH PRIVATE KEY-----", "Bearer abcdefghijklmnopqrstuvwxyz012345",
]


@pytest.mark.parametrize("name", ["GITHUB_TOKEN", "ACTIONS_RUNTIME_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                                  "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "DB_PASSWORD", "SSH_PRIVATE_KEY",
                                  "NPM_AUTH", "API_KEY", "DOCKER_CREDENTIALS", "github_app_private_key", "NPMTOKEN",
                                  "REGISTRY_PASS", "SENTRY_DSN", "SESSION_COOKIE", "GPG_PASSPHRASE"])
def test_secret_names_are_redacted(name: str) -> None:
    assert name_is_secret(name)
    assert redact_value(name, "harmless-looking") == REDACTED


@pytest.mark.parametrize("value", SECRET_VALUES)
def test_secret_values_are_redacted(value: str) -> None:
    assert value_is_secret(value)
    assert redact_value("HARMLESS", value) == REDACTED
    masked = redact_text(f"before {value} after")
    assert value not in masked and masked.startswith("before ") and REDACTED in masked


@pytest.mark.parametrize("name,value", [
    ("FLYWHEEL_NODE", "honey"), ("PATH", "/usr/bin:/bin"), ("KEYBOARD_LAYOUT", "us"),
    ("ATTIC_SERVER", "http://attic.nix-cache.svc.cluster.local:8080"), ("GIT_AUTHOR_NAME", "runner"),
    ("PWD", "/home/runner/_work"), ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
    ("NIX_CONFIG", "extra-substituters = http://attic:8080/main"), ("FLYWHEEL_DRI_RENDER_NODES", "/dev/dri/renderD128"),
])
def test_ordinary_values_pass(name: str, value: str) -> None:
    assert redact_value(name, value) == value


def test_env_text_is_redacted_by_name_and_by_value() -> None:
    text = ("FLYWHEEL_KVM=1\nGITHUB_TOKEN=plain\nFLYWHEEL_RUNNER_CLASS=ghp_" + "x" * 36 + "\n"
            "free text with AKIAIOSFODNN7EXAMPLE inside\nNO_NEWLINE_AT_END=ok")
    assert redact_env_text(text) == ("FLYWHEEL_KVM=1\nGITHUB_TOKEN=[redacted]\nFLYWHEEL_RUNNER_CLASS=[redacted]\n"
                                     "free text with [redacted] inside\nNO_NEWLINE_AT_END=ok")


def test_redacted_environ() -> None:
    env = redacted_environ({"HOME": "/root", "GH_TOKEN": "t", "URL": "https://a:b@c"})
    assert env == {"HOME": "/root", "GH_TOKEN": REDACTED, "URL": REDACTED}


def test_hints_env_output_passes_redaction_untouched() -> None:
    # If a FLYWHEEL_* name ever looked secret, job-started would publish [redacted].
    text = to_env(collect("/", environ={"FLYWHEEL_RUNNER_CLASS": "tinyland-nix", "FLYWHEEL_NODE_NAME": "honey"}))
    assert redact_env_text(text) == text


_ALNUM = string.ascii_letters + string.digits


@settings(max_examples=200, deadline=None)
@given(prefix=st.sampled_from(["ghp_", "ghs_", "gho_"]), body=st.text(_ALNUM, min_size=36, max_size=40),
       left=st.text(string.printable, max_size=40), right=st.text(string.whitespace + ",;\"'", max_size=5))
def test_any_github_token_inside_any_text_is_masked(prefix: str, body: str, left: str, right: str) -> None:
    token = prefix + body
    assert token not in redact_text(left + " " + token + right)


def test_real_hints_documents_pass_redaction_untouched(tmp_path) -> None:
    """No false positive on what a pod really publishes: this host (deep, with lavapipe) and a
    crafted GPU tree, rendered every way the hooks render them."""
    import json
    import os

    from flywheel_runtime.hooks.redact import redact_doc
    from flywheel_runtime.probe import to_markdown
    from tests.unit.probe.tree import CARDS, make_root

    env = {"FLYWHEEL_RUNNER_CLASS": "tinyland-nix-gpu", "FLYWHEEL_SCALE_SET": "tinyland-nix-gpu",
           "FLYWHEEL_NODE_NAME": "honey", "FLYWHEEL_OVERLAY": "tinyland"}
    roots = ["/"] + ([make_root(tmp_path, CARDS)] if os.geteuid() == 0 else [])
    for root in roots:
        doc = collect(root, deep=root == "/", environ=env)
        assert redact_doc(doc) == doc
        assert redact_text(json.dumps(doc, indent=2)) == json.dumps(doc, indent=2)
        assert redact_text(to_markdown(doc)) == to_markdown(doc)


def test_an_unbroken_run_longer_than_any_published_value_is_withheld_unread() -> None:
    """A blob (or a hostile 128 KiB value) is withheld whole: the rules never scan it, so
    their cost stays bounded, and whatever it encodes is not published."""
    from flywheel_runtime.hooks.redact import MAX_RUN

    blob = "ez-" * (MAX_RUN // 3 + 1)
    assert redact_text(f"node {blob} ok") == f"node {REDACTED} ok"
    fits = "a" * MAX_RUN
    assert redact_text(f"node {fits} ok") == f"node {fits} ok"
