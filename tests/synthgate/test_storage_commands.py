"""``synthgate storage apply-lifecycle`` against moto's S3 server."""

from __future__ import annotations

import pytest
from fixtures.s3 import BUCKET, MotoServer, s3_env

from synthgate.cli import main
from taskcore.s3 import LIFECYCLE_RULE_ID


def _rules(moto: MotoServer) -> dict[str, dict[str, object]]:
    rules = moto.client().get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    return {str(rule["ID"]): dict(rule) for rule in rules}


def test_apply_lifecycle_expires_objects_after_the_rounded_up_ttl_and_keeps_other_rules(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in s3_env(moto).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SYNTHGATE_TASK_TTL_SECONDS", str(36 * 3600))
    moto.client().put_bucket_lifecycle_configuration(
        Bucket=BUCKET,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "someone-elses",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "logs/"},
                    "Expiration": {"Days": 90},
                }
            ]
        },
    )
    assert main(["storage", "apply-lifecycle"]) == 0
    assert main(["storage", "apply-lifecycle"]) == 0  # idempotent: one rule of ours
    rules = _rules(moto)
    assert sorted(rules) == sorted(["someone-elses", LIFECYCLE_RULE_ID])
    assert rules[LIFECYCLE_RULE_ID]["Expiration"] == {"Days": 2}
    assert rules[LIFECYCLE_RULE_ID]["Status"] == "Enabled"
    assert rules["someone-elses"]["Expiration"] == {"Days": 90}
    assert "expire 2 day(s) after they are written" in capsys.readouterr().out


def test_apply_lifecycle_refuses_local_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNTHGATE_STORAGE", raising=False)
    with pytest.raises(SystemExit) as caught:
        main(["storage", "apply-lifecycle"])
    assert "not s3" in str(caught.value.code)
