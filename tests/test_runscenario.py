"""`manage.py runscenario`: exit codes 0 / 1 / 2 / 3, progress lines and a summary, the JUnit
XML and JSON reports, the stored run and its admin downloads. The command starts the
engine in-process (embedded settings) and the built-in CSMS (--builtin-csms)."""

from __future__ import annotations

import io
import json
import signal
import socket
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from chargers.models import Charger
from scenarios import library
from scenarios.models import ScenarioRun
from scenarios.texts import HIDDEN
from tests.http_hook import http_hook
from tests.junit_reports import valid_junit
from tests.process import ManagePy, free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSING = """\
name: boot-and-session
description: The CSMS accepts the boot and a session.
variables: {id_tag: DRIVER-1}
chargers:
  template: {count: 2}
spread: 0.2s
steps:
  - expect: {answer: BootNotification, status: Accepted}
  - plug_in: {}
  - present_id_tag: {id_tag: "${id_tag}"}
  - wait: {status: Charging, timeout: 20}
  - expect: {answer: StartTransaction, status: Accepted}
"""

FAILING = """\
name: long-heartbeat
description: Expects a heartbeat interval the built-in CSMS does not give.
chargers:
  template: {count: 1}
steps:
  - expect: {heartbeat_interval_at_least: "${minimum}"}
  - wait: {seconds: 0}
variables: {minimum: 100000}
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def runscenario(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("runscenario", *args, stdout=out, stderr=err)
    code = exited.value.code
    assert isinstance(code, int)
    return code, out.getvalue(), err.getvalue()


def test_a_passing_run_exits_0_with_reports(tmp_path: Path) -> None:
    junit, report = tmp_path / "out.xml", tmp_path / "out.json"
    code, out, _ = runscenario(
        write(tmp_path, "ok.yaml", PASSING),
        "--builtin-csms",
        "--seed",
        "5",
        "--junit",
        str(junit),
        "--json",
        str(report),
    )
    assert code == 0, out
    assert "Built-in CSMS on ws://127.0.0.1:" in out
    assert out.count(": passed (") == 10  # a line per step done per charger
    assert "boot-and-session: PASSED — 2 chargers, 10 steps (10 passed), seed 5" in out
    assert out.rstrip().endswith("1 of 1 scenarios passed (exit code 0).")
    suites = valid_junit(junit)
    assert suites.tag == "testsuites"
    (suite,) = suites.findall("testsuite")
    # The file as it was given on the command line (not only its name).
    assert suite.get("name") == "boot-and-session"
    assert suite.get("file") == str(tmp_path / "ok.yaml")
    # The JUnit schema's dateTime: to the second, no zone (UTC), the run's start.
    started = datetime.fromisoformat(json.loads(report.read_text())[0]["started"])
    assert suite.get("timestamp") == started.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("10", "0", "0")
    assert suite.find("testcase") is not None and suite.find(".//failure") is None
    (result,) = json.loads(report.read_text())
    run = ScenarioRun.objects.get()
    assert result == run.result
    assert result["status"] == "passed" and result["seed"] == 5
    assert run.frame_count > 0
    # The temporary chargers were removed.
    assert not Charger.objects.filter(charge_point_id__startswith="SCN-").exists()


@pytest.mark.parametrize("option", ["--junit", "--json"])
def test_a_report_that_cannot_be_written_is_refused_before_anything_runs(
    tmp_path: Path, option: str
) -> None:
    """It was found only after the run: the verdicts printed, then a traceback."""
    scenario = write(tmp_path, "ok.yaml", PASSING)
    for target, problem in [
        (tmp_path / "missing" / "out.xml", f"its folder {tmp_path / 'missing'} does not exist"),
        (tmp_path, "is a directory"),
    ]:
        with pytest.raises(CommandError) as refused:
            call_command("runscenario", scenario, "--builtin-csms", option, str(target))
        assert refused.value.returncode == 2
        assert str(refused.value) == f"{option} {target}: {problem}"
    assert not ScenarioRun.objects.exists()


def test_a_report_at_a_scenario_files_path_or_at_the_other_reports_is_refused(
    tmp_path: Path,
) -> None:
    """QA: `--json smoke.yaml` removed the scenario file as an earlier report, then said it
    could not be read; `--junit r --json r` wrote the JSON over the XML, exit 0."""
    scenario = write(tmp_path, "ok.yaml", PASSING)
    same = tmp_path / "." / "ok.yaml"
    for args, said in [
        (["--json", str(same)], f"--json {same} is a scenario file given to run"),
        (["--junit", scenario], f"--junit {scenario} is a scenario file given to run"),
        (
            ["--junit", str(tmp_path / "r"), "--json", str(tmp_path / "r")],
            f"--junit and --json name one file, {tmp_path / 'r'}",
        ),
    ]:
        with pytest.raises(CommandError) as refused:
            call_command("runscenario", scenario, "--builtin-csms", *args)
        assert refused.value.returncode == 2
        assert str(refused.value).startswith(said), str(refused.value)
        assert str(refused.value).endswith("; nothing ran.")
        assert Path(scenario).read_text() == PASSING
    assert not ScenarioRun.objects.exists()


def test_a_failing_expectation_exits_1_and_the_junit_names_the_step(tmp_path: Path) -> None:
    junit = tmp_path / "out.xml"
    code, out, _ = runscenario(
        write(tmp_path, "ok.yaml", PASSING),
        write(tmp_path, "bad-csms.yaml", FAILING),
        "--builtin-csms",
        "--junit",
        str(junit),
    )
    assert code == 1
    assert "long-heartbeat: FAILED" in out
    assert out.rstrip().endswith("1 of 2 scenarios passed, 1 failed (exit code 1).")
    suites = valid_junit(junit)
    assert [s.get("name") for s in suites.findall("testsuite")] == [
        "boot-and-session",
        "long-heartbeat",
    ]
    assert suites.get("failures") == "1"
    # Skipped steps are counted by their suite: the schema has no such count on the root.
    assert [s.get("skipped") for s in suites.findall("testsuite")] == ["0", "1"]
    failure = suites.find(".//failure")
    assert failure is not None
    message = failure.get("message") or ""
    assert message.startswith("steps[0] expect on SCN-R")
    assert message.endswith("expected at least 100000 s")
    assert failure.text == message


# Two chargers whose CSMS hook answers the first badly (a check the CSMS failed) and does
# not answer the second (the step could not be carried out: an error).
MIXED = """\
name: mixed
description: One charger fails a check, the other cannot carry out its step.
chargers:
  template: {count: 2}
steps:
  - trigger: {url: "${hook}/${charge_point_id}", expect_status: 200}
variables: {hook: "http://127.0.0.1:9"}
"""


def _fail_first_drop_others(path: str) -> int | None:
    return 500 if path.endswith("-1") else None


def test_an_error_exits_3_even_when_a_check_failed_too(tmp_path: Path) -> None:
    """Exit code 1 said "the CSMS failed a check" of a run that could not carry out every
    step too (a hook not reached, a CSMS that never answered the connect): a CI job could
    not tell its CSMS's failures from its own set-up's. An error wins, in the run's status
    and in the exit code, and the last line says how many of each."""
    with http_hook(_fail_first_drop_others) as hook:
        code, out, err = runscenario(
            write(tmp_path, "mixed.yaml", MIXED),
            write(tmp_path, "bad-csms.yaml", FAILING),
            "--builtin-csms",
            "--var",
            f"hook={hook}",
            "--json",
            str(tmp_path / "out.json"),
        )
    assert code == 3, out + err
    assert out.rstrip().endswith("0 of 2 scenarios passed, 1 failed, 1 in error (exit code 3).")
    assert dict(ScenarioRun.objects.values_list("name", "status")) == {
        "mixed": "error",
        "long-heartbeat": "failed",
    }
    (mixed, _) = json.loads((tmp_path / "out.json").read_text())
    assert mixed["status"] == "error"
    assert sorted(c["status"] for c in mixed["chargers"]) == ["error", "failed"]


def test_a_command_that_cannot_finish_exits_3_not_1(tmp_path: Path) -> None:
    """The report's folder went away during the run: the command ended in a traceback,
    exit code 1 (Python's), read by CI as a CSMS that failed its checks."""
    reports = tmp_path / "reports"
    reports.mkdir()
    scenario = write(
        tmp_path,
        "gone.yaml",
        MIXED.replace("count: 2", "count: 1").replace("${charge_point_id}", "remove"),
    )

    def remove_reports(path: str) -> int:
        reports.rmdir()
        return 200

    with http_hook(remove_reports) as hook:
        code, out, err = runscenario(
            scenario, "--builtin-csms", "--var", f"hook={hook}", "--junit", str(reports / "x.xml")
        )
    assert code == 3, out + err
    assert "mixed: PASSED" in out
    assert err.rstrip().endswith(
        f"runscenario could not finish: FileNotFoundError: [Errno 2] No such file or directory: "
        f"'{reports / 'x.xml'}' (exit code 3); the runs that ended are stored (admin: Scenario "
        "runs)."
    )
    assert ScenarioRun.objects.get().status == "passed"


def test_junit_testcases_are_named_by_what_they_check_the_same_in_every_run(
    tmp_path: Path,
) -> None:
    """A CI list (GitLab, Jenkins) shows a testcase's name: `steps[2] expect` said nothing
    of what failed, nor told the expects of a scenario apart. The name comes from the step
    as written, never from what a run drew: the same in every run (CI keeps a test's
    history by its name), unique within the charger's case."""
    files = write(tmp_path, "ok.yaml", PASSING), write(tmp_path, "bad-csms.yaml", FAILING)
    reports = []
    for seed in ("1", "2"):
        junit = tmp_path / f"run-{seed}.xml"
        code, out, _ = runscenario(*files, "--builtin-csms", "--seed", seed, "--junit", str(junit))
        assert code == 1, out
        reports.append(valid_junit(junit))
    named = [[(c.get("classname"), c.get("name")) for c in r.iter("testcase")] for r in reports]
    assert named[0] == named[1]
    assert len(set(named[0])) == len(named[0])
    assert named[0][:5] == [
        ("boot-and-session.SCN-1", "steps[0] expect BootNotification answered Accepted"),
        ("boot-and-session.SCN-1", "steps[1] plug_in"),
        ("boot-and-session.SCN-1", "steps[2] present_id_tag DRIVER-1"),
        ("boot-and-session.SCN-1", "steps[3] wait for connector 1 status Charging"),
        ("boot-and-session.SCN-1", "steps[4] expect StartTransaction answered Accepted"),
    ]
    assert named[0][10:] == [
        ("long-heartbeat.SCN-1", "steps[0] expect heartbeat interval at least 100000 s"),
        ("long-heartbeat.SCN-1", "steps[1] wait 0 s"),
    ]
    # The JSON has each step's title too.
    (run,) = ScenarioRun.objects.filter(name="long-heartbeat").order_by("-pk")[:1]
    steps = run.result["chargers"][0]["steps"]
    assert [s["title"] for s in steps] == [
        "expect heartbeat interval at least 100000 s",
        "wait 0 s",
    ]


def test_a_testcase_name_hides_a_secret_variables_value(tmp_path: Path) -> None:
    """A title shows the step's arguments, a variable's value among them: a secret one (by
    its name) is hidden there as in every text a run keeps."""
    secret = """\
name: secret-tag
description: Presents a tag whose value is a secret.
variables: {tag_secret: SECRET-TAG-9}
chargers: {template: {count: 1}}
steps:
  - present_id_tag: {id_tag: "${tag_secret}"}
"""
    junit = tmp_path / "out.xml"
    runscenario(write(tmp_path, "secret.yaml", secret), "--builtin-csms", "--junit", str(junit))
    names = [case.get("name") for case in valid_junit(junit).iter("testcase")]
    assert names == [f"steps[0] present_id_tag {HIDDEN}"]
    assert "SECRET-TAG-9" not in junit.read_text()


def test_a_stored_runs_source_hides_the_files_secret_values(tmp_path: Path) -> None:
    """QA: a run of runscenario keeps its variables hidden from its start, and the hidden
    value stood for the file's own value of the same name when the source was hidden at
    the end: the row (and the admin's source page and download) kept the file's secret."""
    secret = """\
name: secret-source
description: Declares a secret it does not send anywhere.
variables: {csms_password: FILE-SECRET-7, api_token: FILE-TOKEN-8}
chargers: {template: {count: 1}}
steps:
  - wait: {seconds: 0}
"""
    code, out, _ = runscenario(
        write(tmp_path, "secret.yaml", secret), "--builtin-csms", "--var", "api_token=GIVEN-9"
    )
    assert code == 0, out
    run = ScenarioRun.objects.get()
    for value in ("FILE-SECRET-7", "FILE-TOKEN-8", "GIVEN-9"):
        assert value not in run.source
        assert value not in run.shown_source()
    assert f"csms_password: {HIDDEN}, api_token: {HIDDEN}" in run.source


def test_a_stored_runs_source_hides_the_secrets_it_writes_out(tmp_path: Path) -> None:
    """QA: a trigger's URL password and token, its Authorization header and the
    AuthorizationKey a ChangeConfiguration sets, written in the file rather than as secret
    variables, were hidden in the verdicts but kept in the run's source (its admin page and
    download)."""
    secret = """\
name: written-secrets
description: Writes its secrets out.
chargers: {template: {count: 1}}
steps:
  - trigger:
      url: "${csms_control}/chargers/${charge_point_id}/ChangeConfiguration"
      headers: {Authorization: "Bearer HEADER-TOKEN-1"}
      body: {key: AuthorizationKey, value: "00112233445566778899aabbccddeeff"}
  - trigger: {http: GET, url: "http://hook:URL-PASS-2@127.0.0.1:9/x?token=QUERY-TOKEN-3&n=1"}
"""
    runscenario(write(tmp_path, "written.yaml", secret), "--builtin-csms")
    run = ScenarioRun.objects.get()
    assert "GET http://hook:********@127.0.0.1:9/x?token=********&n=1 failed" in str(run.result)
    for value in (
        "HEADER-TOKEN-1",
        "00112233445566778899aabbccddeeff",
        "URL-PASS-2",
        "QUERY-TOKEN-3",
    ):
        assert value not in run.source
        assert value not in run.shown_source()
    assert f'headers: {{Authorization: "{HIDDEN}"}}' in run.source
    assert f"http://hook:{HIDDEN}@127.0.0.1:9/x?token={HIDDEN}&n=1" in run.source
    assert "body: {key: AuthorizationKey, value: " in run.source


def test_var_overrides_a_files_variable(tmp_path: Path) -> None:
    code, out, _ = runscenario(
        write(tmp_path, "bad-csms.yaml", FAILING), "--builtin-csms", "--var", "minimum=60"
    )
    assert code == 0, out
    assert ScenarioRun.objects.get().variables == {"minimum": 60}


def test_a_var_that_no_file_declares_or_uses_exits_2_naming_the_nearest(tmp_path: Path) -> None:
    """A misspelt --var was ignored: the run used the file's own value without a word."""
    files = write(tmp_path, "ok.yaml", PASSING), write(tmp_path, "bad-csms.yaml", FAILING)
    code, _, err = runscenario(*files, "--builtin-csms", "--var", "minimun=60", "--var", "zzz=1")
    assert code == 2
    assert err.splitlines() == [
        "--var minimun: no scenario declares or uses ${minimun} (did you mean minimum?)",
        "--var zzz: no scenario declares or uses ${zzz}",
        "2 problems; nothing ran.",
    ]
    assert not ScenarioRun.objects.exists()
    # One file's variable is no problem for the other file, nor a runtime one for either.
    runtime = "csms_control=http://127.0.0.1:9"
    code, out, _ = runscenario(*files, "--builtin-csms", "--var", "minimum=60", "--var", runtime)
    assert code == 0, out


def test_a_bad_file_exits_2_with_line_and_column_and_nothing_runs(tmp_path: Path) -> None:
    bad = PASSING.replace("timeout: 20", "timeout: soon")
    code, _, err = runscenario(
        write(tmp_path, "ok.yaml", PASSING), write(tmp_path, "bad.yaml", bad), "--builtin-csms"
    )
    assert code == 2
    assert err.splitlines() == [
        f"{tmp_path / 'bad.yaml'}:11:39: steps[3].wait.timeout: must be a duration (a number "
        'of seconds, or a string such as "30s", "2m")',
        "1 problem; nothing ran.",
    ]
    assert not ScenarioRun.objects.exists()


def test_a_template_without_a_csms_exits_2_before_anything_runs(tmp_path: Path) -> None:
    """It was a stored run with an error and exit 1, as if a CSMS had failed a check."""
    path = write(tmp_path, "ok.yaml", PASSING)
    with pytest.raises(CommandError) as refused:
        call_command("runscenario", path)
    assert refused.value.returncode == 2
    assert str(refused.value).startswith(f"{path}: the template's chargers need a CSMS")
    assert not ScenarioRun.objects.exists()


def test_a_csms_control_hook_without_a_value_exits_2_before_anything_runs() -> None:
    """Most library cases make the CSMS act through `${csms_control}`: run against a CSMS
    of one's own without `--var csms_control=URL`, each case connected, ran its first
    steps and ended in error at its first trigger, exit 1, as if the CSMS had failed."""
    needs = str(library.folder() / "remote-stop.yaml")
    free = str(library.folder() / "boot-accepted.yaml")
    with pytest.raises(CommandError) as refused:
        call_command("runscenario", free, needs, "--csms-url", "ws://127.0.0.1:9/ocpp")
    assert refused.value.returncode == 2
    assert str(refused.value) == (
        f"{needs}: the steps make the CSMS act through ${{csms_control}}, which has no value: "
        "give --var csms_control=URL (your CSMS's hook, docs/csms-control.md), or run "
        "against --builtin-csms; nothing ran."
    )
    # The built-in CSMS without its control endpoint gives none either.
    with pytest.raises(CommandError) as refused:
        call_command("runscenario", needs, "--builtin-csms", "--csms-control-port", "-1")
    assert refused.value.returncode == 2
    assert not ScenarioRun.objects.exists()


def test_two_files_of_one_scenario_name_exit_2_before_anything_runs(tmp_path: Path) -> None:
    """A library case copied to be changed, its name kept: the JUnit report held the same
    testsuite and testcases twice, and CI, which tells tests apart by name, mixes up
    their verdicts and history."""
    original = str(library.folder() / "boot-accepted.yaml")
    copy = tmp_path / "my-boot.yaml"
    copy.write_text(Path(original).read_text())
    with pytest.raises(CommandError) as refused:
        call_command("runscenario", original, str(copy), "--builtin-csms")
    assert refused.value.returncode == 2
    assert str(refused.value) == (
        f"{original}, {copy}: each names its scenario boot-accepted, and a report tells "
        "scenarios apart by name: give each file a name of its own; nothing ran."
    )
    assert not ScenarioRun.objects.exists()


def test_options_that_do_not_go_together(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.yaml", PASSING)
    # Exit status 2 as for a bad file: nothing ran (1 would read as a CSMS that failed).
    with pytest.raises(CommandError, match="do not go together") as refused:
        call_command("runscenario", path, "--builtin-csms", "--csms-url", "ws://x")
    assert refused.value.returncode == 2
    with pytest.raises(CommandError, match="NAME=VALUE") as refused:
        call_command("runscenario", path, "--var", "oops")
    assert refused.value.returncode == 2
    # The URL by the chargers' own rule: one they would refuse is refused before a run.
    for url, said in (
        ("http://x", "must start with ws:// or wss://"),
        ("ws://u:secret@127.0.0.1:9/x", "must not hold a user name or password"),
        ("ws://127.0.0.1:99999/x", "is not a valid URL"),
    ):
        with pytest.raises(CommandError, match=said) as refused:
            call_command("runscenario", path, "--csms-url", url)
        assert refused.value.returncode == 2
        assert "secret" not in str(refused.value)
    assert not ScenarioRun.objects.exists()


def test_the_admin_shows_a_run_and_offers_its_downloads(
    tmp_path: Path, admin_client_logged_in: Client
) -> None:
    code, _, _ = runscenario(write(tmp_path, "ok.yaml", PASSING), "--builtin-csms")
    assert code == 0
    run = ScenarioRun.objects.get()
    client = admin_client_logged_in
    assert client.get("/admin/scenarios/scenariorun/").status_code == 200
    page = client.get(f"/admin/scenarios/scenariorun/{run.pk}/change/")
    assert page.status_code == 200
    assert b"steps[4] expect" in page.content
    result = client.get(f"/admin/scenarios/scenariorun/{run.pk}/result/")
    assert json.loads(result.content)["status"] == "passed"
    xml = client.get(f"/admin/scenarios/scenariorun/{run.pk}/junit/")
    assert valid_junit(xml.content).get("tests") == "10"
    frames = client.get(f"/admin/scenarios/scenariorun/{run.pk}/frames/")
    lines = b"".join(frames.streaming_content).splitlines()  # type: ignore[attr-defined]
    assert len(lines) == run.frame_count
    assert all(json.loads(line)["charger_id"] for line in lines)
    source = client.get(f"/admin/scenarios/scenariorun/{run.pk}/source/")
    assert source.content.decode() == PASSING
    assert client.get("/admin/scenarios/scenariorun/add/").status_code == 403


def test_the_admin_shows_the_verdicts_that_did_not_pass_first_and_caps_them(
    admin_client_logged_in: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scenarios import admin as scenario_admin

    monkeypatch.setattr(scenario_admin, "VERDICT_ROWS", 2)
    steps = [
        {"index": n, "kind": "wait", "status": status, "message": f"message-{n}", "duration": 0}
        for n, status in enumerate(["passed", "passed", "failed", "skipped"])
    ]
    run = ScenarioRun.objects.create(
        name="s",
        source="",
        seed=1,
        status="failed",
        result={"chargers": [{"charge_point_id": "CP-9", "steps": steps}]},
    )
    page = admin_client_logged_in.get(f"/admin/scenarios/scenariorun/{run.pk}/change/")
    text = page.content.decode()
    assert "message-2" in text and "message-3" in text and "message-0" not in text
    assert "2 more in the result (JSON)." in text


def test_shown_urls_and_variables_keep_no_credentials() -> None:
    from scenarios.texts import shown_url, shown_variables

    assert (
        shown_url("http://admin:URLPASS@127.0.0.1:9149/x?token=QUERYSECRET&n=1")
        == "http://admin:********@127.0.0.1:9149/x?token=********&n=1"
    )
    assert shown_url("https://h/x?access_token=abc&page=2") == (
        "https://h/x?access_token=********&page=2"
    )
    assert shown_url("http://h/hook") == "http://h/hook"
    assert shown_variables({"Password": "x", "apiKey": "y", "soc": 20}) == {
        "Password": "********",
        "apiKey": "********",
        "soc": 20,
    }


def test_a_charger_that_never_connected_is_an_errored_testcase_not_a_green_run() -> None:
    from scenarios.junit import junit_xml

    why = (
        "SCN-R45.k3x9-1 did not connect: boot Accepted did not happen within 60.0 s (it is offline)"
    )
    skipped = {"status": "skipped", "message": f"skipped after: {why}", "kind": "plug_in"}
    result = {
        "scenario": "s",
        "run": 45,
        "status": "error",
        "chargers": [
            {
                "charge_point_id": "SCN-R45.k3x9-1",
                "status": "error",
                "message": why,
                "steps": [{**skipped, "index": 0}, {**skipped, "index": 1}],
            }
        ],
    }
    suites = valid_junit(junit_xml([result]))
    assert (suites.get("errors"), suites.get("tests")) == ("1", "3")
    (suite,) = suites.iter("testsuite")
    assert suite.get("skipped") == "2"
    errored = [case for case in suites.iter("testcase") if case.find("error") is not None]
    # Named without the run's id and token: the same test in every run (CI keeps history
    # by name).
    assert [(case.get("classname"), case.get("name")) for case in errored] == [
        ("s.SCN-1", "charger")
    ]
    assert {case.get("classname") for case in suites.iter("testcase")} == {"s.SCN-1"}
    ids = [p.get("value") for p in suites.iter("property") if p.get("name") == "charge_point_id"]
    assert ids == ["SCN-R45.k3x9-1"]
    error = errored[0].find("error")
    assert error is not None and error.get("message") == why


def test_a_run_cut_short_after_its_setup_is_not_reported_as_a_failed_setup() -> None:
    """A run cancelled (or whose engine failed) mid-way has its chargers and their steps:
    its message is the run's, and CI showed it as a "setup" testcase, pointing at the
    wrong phase."""
    from scenarios.junit import junit_xml

    result = {
        "scenario": "s",
        "message": "cancelled before it finished",
        "setup_duration": 0.2,
        "chargers": [
            {
                "charge_point_id": "CP-1",
                "status": "error",
                "steps": [
                    {"index": 0, "kind": "wait", "status": "passed", "duration": 1},
                    {"index": 1, "kind": "wait", "status": "error", "message": "cancelled"},
                ],
            }
        ],
    }
    cases = list(valid_junit(junit_xml([result])).iter("testcase"))
    assert [c.get("name") for c in cases] == ["run", "steps[0] wait", "steps[1] wait"]
    error = cases[0].find("error")
    assert error is not None and error.get("message") == "cancelled before it finished"


def test_every_error_and_failure_carries_its_message_as_text_too() -> None:
    """GitLab shows an error's text, never its `message` attribute: a run-level or a
    charger's error with the attribute alone was an error without a word of why."""
    from scenarios.junit import junit_xml

    result = {
        "scenario": "s",
        "run": 4,
        "message": "the engine: no worker answered",
        "chargers": [
            {
                "charge_point_id": "SCN-R4.k3x9-1",
                "status": "error",
                "message": "SCN-R4.k3x9-1 did not connect",
                "steps": [{"index": 0, "kind": "wait", "status": "skipped", "message": "x"}],
            },
            {
                "charge_point_id": "SCN-R4.k3x9-2",
                "status": "failed",
                "steps": [{"index": 0, "kind": "wait", "status": "failed", "message": "late"}],
            },
        ],
    }
    judged = [
        element
        for case in valid_junit(junit_xml([result])).iter("testcase")
        for element in case
        if element.tag in ("error", "failure")
    ]
    assert [(e.tag, e.get("message"), e.text) for e in judged] == [
        ("error", "the engine: no worker answered", "the engine: no worker answered"),
        ("error", "SCN-R4.k3x9-1 did not connect", "SCN-R4.k3x9-1 did not connect"),
        ("failure", "late", "late"),
    ]


def test_a_run_that_could_not_start_is_one_errored_testcase_and_frames_are_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from scenarios import models
    from scenarios.junit import junit_xml

    suites = valid_junit(
        junit_xml([{"scenario": "s", "message": "no location named 'X'", "chargers": []}])
    )
    (case,) = suites.iter("testcase")
    assert case.get("name") == "setup"
    error = case.find("error")
    assert error is not None and error.get("message") == "no location named 'X'"
    assert suites.get("errors") == "1"

    monkeypatch.setattr(models, "MAX_FRAMES", 3)
    run = ScenarioRun(name="s", source="", seed=1)
    run.store_frames(({"n": n} for n in range(5)), dropped=2)
    assert (run.frame_count, run.frames_dropped) == (3, 4)
    assert run.frame_events() == [{"n": 0}, {"n": 1}, {"n": 2}]


LONG = """\
name: long
description: waits long enough to be ended by a signal
chargers: {template: {count: 2, prefix: TERM}}
steps:
  - wait: {seconds: 0.1}
  - wait: {seconds: 120}
"""


@pytest.mark.slow
def test_builtin_csms_listens_on_the_port_asked_for(tmp_path: Path) -> None:
    """It took any free port: two runs at once each with a port a firewall or a CSMS-side
    tool expects, or a run beside a busy default, had no way to say which."""
    port, control = free_port(), free_port()
    code, out, _ = runscenario(
        write(tmp_path, "ok.yaml", PASSING),
        "--builtin-csms",
        "--csms-port",
        str(port),
        "--csms-control-port",
        str(control),
    )
    assert code == 0, out
    assert f"Built-in CSMS on ws://127.0.0.1:{port}\n" in out
    assert f"Its control endpoint (${{csms_control}}) on http://127.0.0.1:{control}\n" in out
    assert ScenarioRun.objects.get().result["status"] == "passed"


@pytest.mark.parametrize("option", ["--csms-port", "--csms-control-port"])
def test_a_builtin_csms_port_in_use_exits_2_before_anything_runs(
    tmp_path: Path, option: str
) -> None:
    """A clear line naming the option and the port (as runsimulator's), not a traceback;
    the CSMS started before its control endpoint failed is stopped again."""
    path = write(tmp_path, "ok.yaml", PASSING)
    csms_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--csms-port": str(port), "--csms-control-port": str(port)}
        if option == "--csms-control-port":
            ports["--csms-port"] = str(csms_port)
        args = [arg for pair in ports.items() for arg in pair]
        with pytest.raises(CommandError) as refused:
            call_command("runscenario", path, "--builtin-csms", *args, stdout=io.StringIO())
    assert refused.value.returncode == 2
    assert str(refused.value).startswith(f"{option} {port}: cannot listen on 127.0.0.1:{port} (")
    assert not ScenarioRun.objects.exists()
    with socket.socket() as again:
        again.bind(("127.0.0.1", csms_port))  # nothing left listening on it


def test_the_builtin_csms_ports_need_builtin_csms(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.yaml", PASSING)
    for option in ("--csms-port", "--csms-control-port"):
        with pytest.raises(CommandError, match="add --builtin-csms") as refused:
            call_command("runscenario", path, "--csms-url", "ws://x", option, "9000")
        assert refused.value.returncode == 2
    with pytest.raises(CommandError, match="within 1 and 65535") as refused:
        call_command("runscenario", path, "--builtin-csms", "--csms-port", "0")
    assert refused.value.returncode == 2


@pytest.mark.parametrize(
    ("sent", "code", "said"),
    [(signal.SIGTERM, 143, "Terminated (SIGTERM)"), (signal.SIGINT, 130, "Interrupted (Ctrl-C)")],
)
def test_a_signal_stores_the_run_as_an_error_and_deletes_its_chargers(
    tmp_path: Path, sent: signal.Signals, code: int, said: str
) -> None:
    """SIGTERM is what a CI job's timeout or cancel sends: it ended the process at once,
    leaving the run 'running' for good and its chargers in the database (connecting at the
    next start of the simulator). Ctrl-C cleaned up, then printed a traceback; and started
    as a CI job starts a background process, with SIGINT ignored, it never ended: this
    one is started so."""
    scenario = tmp_path / "long.yaml"
    scenario.write_text(LONG)
    # Reports of an earlier invocation: a CI step that publishes them "always" must not
    # show their verdicts for this one.
    junit, json_report = tmp_path / "old.xml", tmp_path / "old.json"
    junit.write_text("<testsuites/>")
    json_report.write_text("[]")
    run = ManagePy(
        tmp_path,
        "runscenario",
        str(scenario),
        "--builtin-csms",
        "--migrate",
        "--junit",
        str(junit),
        "--json",
        str(json_report),
        sigint_ignored=sent is signal.SIGINT,
    )
    try:
        run.wait_for_output("steps[0] wait: passed")
        run.signal(sent)
        assert run.wait(60) == code
    finally:
        run.stop()
    assert said in run.output
    assert "Traceback" not in run.output
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        (status,) = db.execute("select status from scenarios_scenariorun").fetchone()
        left = db.execute(
            "select count(*) from chargers_charger where charge_point_id like 'TERM-%'"
        ).fetchone()
    assert status == "error"
    assert left == (0,)
    assert not junit.exists() and not json_report.exists()


LOST_RUN = """
from datetime import timedelta
from django.utils import timezone
from scenarios.models import ScenarioRun
from scenarios.texts import HIDDEN
from tests.cast import make_charger
make_charger("LOST-R1-1", csms_url="ws://127.0.0.1:9/ocpp")
ScenarioRun.objects.create(
    name="lost", source="x", seed=1, status="running",
    heartbeat=timezone.now() - timedelta(minutes=5),
    result={"chargers": [{"charge_point_id": "LOST-R1-1", "temporary": True}]},
)
"""


@pytest.mark.slow
def test_the_simulator_marks_a_lost_run_and_deletes_its_chargers_before_loading(
    tmp_path: Path,
) -> None:
    """A run whose process was killed (SIGKILL: no clean-up) left its chargers: the next
    start must not load them and connect them to the CSMS."""
    from tests.process import run_manage

    assert run_manage(tmp_path, "migrate").returncode == 0
    made = run_manage(tmp_path, "shell", "-c", LOST_RUN)
    assert made.returncode == 0, made.stderr
    sim = ManagePy(tmp_path, "runsimulator", "--no-web", "--status-every", "1")
    try:
        sim.wait_for_output("fleet: 0/0 accepted")
        sim.signal(signal.SIGINT)
        assert sim.wait(60) == 0
    finally:
        sim.stop()
    assert "loaded 0 chargers" in sim.output
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        assert db.execute("select status from scenarios_scenariorun").fetchone() == ("error",)
        assert db.execute("select count(*) from chargers_charger").fetchone() == (0,)
