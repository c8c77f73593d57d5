"""The scenario format (scenarios/format.py, docs/scenario.schema.json): what a good file
becomes, and that every problem of a bad one names its file, line, column and path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jsonschema
import pytest

from scenarios import format as scenario_format
from scenarios.format import ScenarioError, duration, parse, parse_var
from scenarios.steps import STEPS
from tests import ocpp_schemas

GOOD = """\
name: remote-start
description: The CSMS accepts a session.
seed: 42
variables: {id_tag: DRIVER-1, timeout: 30}
chargers:
  template: {count: 2, prefix: SCN, connectors: 2}
spread: 2s
steps:
  - plug_in: {connector: 1, soc: 20, target_soc: 80}
  - present_id_tag: {id_tag: "${id_tag}"}
  - wait: {status: Charging, timeout: "${timeout}"}
  - expect: {answer: StartTransaction, status: Accepted}
  - trigger: {url: "${csms_control}/start/${charge_point_id}", body: {tag: "${id_tag}-x"}}
  - reboot:
  - wait: {seconds: 500ms}
"""


def errors_of(text: str, **variables: object) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        parse(textwrap.dedent(text), file="smoke.yaml", variables=variables)
    return [str(error) for error in caught.value.errors]


def test_a_good_file_becomes_its_steps_with_variables_in_place() -> None:
    scenario = parse(GOOD, file="remote-start.yaml")
    assert scenario.name == "remote-start"
    assert scenario.seed == 42
    assert scenario.spread == 2.0
    assert [step.kind for step in scenario.steps] == [
        "plug_in",
        "present_id_tag",
        "wait",
        "expect",
        "trigger",
        "reboot",
        "wait",
    ]
    assert scenario.steps[1].args == {"id_tag": "DRIVER-1"}
    # A string that is one variable takes the variable's type.
    assert scenario.steps[2].args == {"status": "Charging", "timeout": 30}
    # Runtime variables stay for the runner; others are written in.
    assert scenario.steps[4].args == {
        "url": "${csms_control}/start/${charge_point_id}",
        "body": {"tag": "DRIVER-1-x"},
    }
    assert scenario.steps[5].args == {}
    assert (scenario.steps[2].line, scenario.steps[2].column) == (11, 5)
    assert scenario.source == GOOD


def test_var_overrides_the_files_variables_and_is_read_as_a_yaml_scalar() -> None:
    name, value = parse_var("timeout=5")
    assert (name, value) == ("timeout", 5)
    scenario = parse(GOOD, variables={name: value, "id_tag": "OTHER"})
    assert scenario.steps[2].args["timeout"] == 5
    assert scenario.steps[1].args["id_tag"] == "OTHER"
    assert parse_var("tag=ABC")[1] == "ABC"
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_var("no-equals")


def test_a_wrong_type_names_line_column_and_path() -> None:
    text = """\
    name: smoke
    description: x
    chargers: {ids: [CP-1]}
    steps:
      - plug_in: {}
      - wait:
          status: Charging
          timeout: soon
    """
    assert errors_of(text) == [
        "smoke.yaml:8:16: steps[1].wait.timeout: must be a duration (a number of seconds, "
        'or a string such as "30s", "2m")'
    ]


def test_unknown_keys_and_step_kinds_point_at_the_key() -> None:
    text = """\
    name: smoke
    description: x
    sed: 1
    chargers: {ids: [CP-1]}
    steps:
      - plug_in: {connector: 1, sco: 20}
      - plugin: {}
    """
    found = errors_of(text)
    assert found[0].startswith("smoke.yaml:3:1: sed: unknown key 'sed' (expected one of: ")
    assert found[1].startswith("smoke.yaml:6:29: steps[0].plug_in.sco: unknown key 'sco'")
    assert found[2].startswith("smoke.yaml:7:5: steps[1].plugin: unknown step kind 'plugin'")
    assert len(found) == 3


def test_missing_keys_point_at_their_mapping() -> None:
    text = """\
    name: smoke
    chargers:
      template: {prefix: X}
    steps: []
    """
    assert errors_of(text) == [
        "smoke.yaml:1:1: missing key 'description'",
        "smoke.yaml:3:13: chargers.template: missing key 'count'",
        "smoke.yaml:4:8: steps: needs at least 1 item",
    ]


def test_keys_that_do_not_go_together() -> None:
    text = """\
    name: smoke
    description: x
    chargers: {ids: [CP-1], pattern: "CP-*"}
    steps:
      - wait: {seconds: 3, timeout: 4}
      - expect: {csms_call: Reset, answers_within: 3}
      - override: {action: Reset, status: Rejected}
      - network: {cut: 3, latency_ms: 100}
      - wait: {}
    """
    assert errors_of(text) == [
        "smoke.yaml:3:11: chargers: needs exactly one of: ids, pattern, location, template",
        "smoke.yaml:5:24: steps[0].wait.timeout: 'timeout' does not go with wait: seconds",
        "smoke.yaml:6:13: steps[1].expect: csms_call and answers_within do not go together: "
        "one expect per step",
        "smoke.yaml:7:15: steps[2].override: needs exactly one of: next: true, every: true",
        "smoke.yaml:8:14: steps[3].network: cut and latency_ms do not go together: one "
        "network change per step",
        "smoke.yaml:9:11: steps[4].wait: needs exactly one of: status, csms_call, seconds",
    ]


def test_unknown_variables_and_bad_yaml_and_duplicates() -> None:
    assert errors_of(
        """\
        name: smoke
        description: x
        chargers: {ids: [CP-1]}
        steps:
          - present_id_tag: {id_tag: "${driver}"}
        """
    ) == [
        "smoke.yaml:5:30: steps[0].present_id_tag.id_tag: unknown variable ${driver} (known: "
        "charge_point_id, charger_id, csms_control, csms_url)"
    ]
    assert errors_of("name: [smoke\ndescription: x\n") == [
        "smoke.yaml:2:12: not valid YAML: expected ',' or ']', but got ':'"
    ]
    assert errors_of("name: a\nname: b\n")[0] == "smoke.yaml:2:1: name: duplicate key"
    assert errors_of("") == ["smoke.yaml:1:1: the file is empty"]
    assert errors_of("- a\n- b\n") == [
        "smoke.yaml:1:1: a scenario is a mapping (name, description, chargers, steps)"
    ]


def test_a_character_yaml_refuses_is_named_by_line_and_column() -> None:
    # PyYAML reports it by character offset: it is shown where the other errors are.
    assert errors_of("name: smoke\ndescription: a\x00b\n") == [
        "smoke.yaml:2:15: not valid YAML: character U+0000 is not allowed"
    ]
    assert errors_of("name: smoke\x07\n") == [
        "smoke.yaml:1:12: not valid YAML: character U+0007 is not allowed"
    ]


def test_aliases_that_expand_beyond_the_limit_are_refused_not_built() -> None:
    # A "billion laughs": each alias names a list of ten of the one before. Six levels would
    # be a million values (nine levels a billion, filling the memory of the web process that
    # parses a scenario posted to the API); five levels (111,111) already pass the 100,000
    # of MAX_VALUES.
    levels = ["  a0: &a0 x"] + [
        f"  a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 6)
    ]
    text = "name: laughs\ndescription: x\nvariables:\n" + "\n".join(levels) + "\n"
    assert errors_of(text) == [
        "smoke.yaml:4:7: variables.a5[7][8][8][8][5]: more than 100,000 values in all, "
        "aliases expanded: too large"
    ]
    # Aliases within the limit are ordinary YAML.
    shared = GOOD.replace("seed: 42", "seed: &seed 42").replace("count: 2", "count: *seed")
    assert parse(shared).chargers == {"template": {"count": 42, "prefix": "SCN", "connectors": 2}}


def test_nesting_deeper_than_the_parser_can_follow_is_a_format_error() -> None:
    assert errors_of("name: " + "[" * 5000 + "]" * 5000) == [
        "smoke.yaml:1:1: nested too deeply (more than 50 levels)"
    ]


def test_a_given_variable_may_hold_no_nul_anywhere() -> None:
    # A file cannot hold one (YAML refuses it); a variable given through the API can, and
    # no database text field can store it.
    for name, value in (
        ("id_tag", "A\x00B"),
        ("deep", {"list": [1, "x\x00"]}),
        ("deep", {"k\x00": 1}),
        ("na\x00me", "fine"),
    ):
        with pytest.raises(ScenarioError) as caught:
            parse(GOOD, file="g.yaml", variables={name: value})
        assert [(e.path, e.message) for e in caught.value.errors] == [
            (scenario_format.variable_path(name), "holds a NUL character (U+0000)")
        ]
    assert scenario_format.variable_path("na\x00me") == "variables.na\\x00me"
    assert parse(GOOD, variables={"id_tag": "A-B"}).variables["id_tag"] == "A-B"


def test_a_nul_written_in_an_id_tag_is_said_at_its_line() -> None:
    # YAML's "\u0000" escape writes one: the charger would refuse it only at run time,
    # after the run's chargers were made.
    text = """\
    name: smoke
    description: x
    chargers: {ids: [CP-1]}
    steps:
      - present_id_tag: {id_tag: "AB\\u0000"}
    """
    [error] = errors_of(text)
    assert error.startswith(
        "smoke.yaml:5:30: steps[0].present_id_tag.id_tag: an idTag is printable"
    )


def test_a_control_character_written_in_a_faults_info_is_said_at_its_line() -> None:
    # As the idTag's: the charger refused it only at run time, an error (1), not a bad
    # file (2), after the run's chargers were made (QA).
    text = """\
    name: smoke
    description: x
    chargers: {ids: [CP-1]}
    steps:
      - fault: {error_code: OtherError, info: "x\\u0000y\\u001b[31m"}
    """
    [error] = errors_of(text)
    assert error.startswith("smoke.yaml:5:43: steps[0].fault.info: info is printable text")


@pytest.mark.parametrize("value", ["-5", '"-5s"', "-0.5"])
def test_a_negative_duration_is_said_to_be_negative(value: str) -> None:
    text = f"""\
    name: smoke
    description: x
    chargers: {{ids: [CP-1]}}
    steps:
      - wait: {{status: Charging, timeout: {value}}}
    """
    assert errors_of(text) == ["smoke.yaml:5:39: steps[0].wait.timeout: must not be negative"]


def test_an_unknown_variable_is_said_once() -> None:
    text = """\
    name: smoke
    description: x
    chargers: {ids: [CP-1]}
    steps:
      - wait: {seconds: "${nope}"}
      - plug_in: {connector: "${nope}"}
    """
    errors = errors_of(text)
    assert [e.split(": ")[1] for e in errors] == [
        "steps[0].wait.seconds",
        "steps[1].plug_in.connector",
    ]
    assert all("unknown variable ${nope}" in e for e in errors)


def test_a_timeout_over_the_engines_limit_is_refused() -> None:
    text = """\
    name: smoke
    description: x
    chargers: {ids: [CP-1]}
    steps:
      - wait: {status: Charging, timeout: 10m}
    """
    assert errors_of(text) == [
        "smoke.yaml:5:39: steps[0].wait.timeout: must be at most 300 seconds"
    ]


def test_a_wait_of_more_than_an_hour_is_refused() -> None:
    # A typo (100000 for 100) held one of the CHARGESIM_SCENARIO_RUNS slots for a day.
    text = """\
    name: smoke
    description: x
    chargers: {ids: [CP-1]}
    steps:
      - wait: {seconds: 100000}
      - wait: {seconds: 1h}
    """
    assert errors_of(text) == [
        "smoke.yaml:5:21: steps[0].wait.seconds: must be at most 3600 seconds (an hour): "
        "for longer, wait several times"
    ]


def test_durations_must_be_finite_and_seeds_fit_the_store() -> None:
    text = """\
    name: smoke
    description: x
    seed: -1
    chargers: {ids: [CP-1]}
    steps:
      - wait: {seconds: .inf}
    """
    assert errors_of(text) == [
        "smoke.yaml:3:7: seed: must be at least 0",
        "smoke.yaml:6:21: steps[0].wait.seconds: must be a finite number of seconds",
    ]


def test_a_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as caught:
        scenario_format.load(tmp_path / "missing.yaml")
    assert str(caught.value).endswith("missing.yaml:1:1: cannot read it: No such file or directory")


def test_durations() -> None:
    assert duration(3) == 3.0
    assert duration("500ms") == 0.5
    assert duration("2m") == 120.0
    assert duration("1.5h") == 5400.0
    with pytest.raises(ValueError):
        duration("soon")
    with pytest.raises(ValueError):
        duration(True)


def test_the_schema_is_valid_and_names_every_step_kind_the_runner_has() -> None:
    schema = scenario_format.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(scenario_format.step_kinds()) == set(STEPS)


def test_the_sample_in_the_docs_parses() -> None:
    docs = Path(__file__).resolve().parent.parent / "docs" / "scenarios.md"
    text = docs.read_text()
    sample = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert parse(sample).name == "local-start"


def test_a_misspelt_action_or_answer_status_is_a_format_error_with_a_hint() -> None:
    """A typo used to pass the format and then fail the CSMS's check ("expected Acepted"),
    or wait 30 s for an action nobody sends."""
    errors = errors_of(
        """\
        name: typos
        description: x
        chargers: {template: {count: 1}}
        steps:
          - expect: {answer: BootNotification, status: Acepted}
          - expect: {answer: BootNotificaton}
          - wait: {csms_call: RemoteStartTransacton}
          - expect: {no_csms_call: Rest, within: 1}
          - expect: {answer: Heartbeat, status: Accepted}
          - expect: {answer: Authorize, status: Accepted, call_error: true}
        """
    )
    assert errors == [
        "smoke.yaml:5:48: steps[0].expect.status: 'Acepted' is not a status of "
        "BootNotification's answer in OCPP 1.6; did you mean Accepted?",
        "smoke.yaml:6:22: steps[1].expect.answer: 'BootNotificaton' is not an action a "
        "charger sends in OCPP 1.6; did you mean BootNotification?",
        "smoke.yaml:7:23: steps[2].wait.csms_call: 'RemoteStartTransacton' is not an action "
        "a CSMS sends in OCPP 1.6; did you mean RemoteStartTransaction?",
        "smoke.yaml:8:28: steps[3].expect.no_csms_call: 'Rest' is not an action a CSMS "
        "sends in OCPP 1.6; did you mean Reset?",
        "smoke.yaml:9:41: steps[4].expect.status: the answer to Heartbeat has no status: "
        "check its payload",
        "smoke.yaml:10:41: steps[5].expect.status: a CALLERROR has no status: expect "
        "call_error: true, or a status, not both",
    ]


def test_the_chargers_calls_and_their_statuses_are_the_ocpp_packages() -> None:
    for action, statuses in scenario_format.CHARGER_CALLS.items():
        assert (ocpp_schemas.answer_statuses(action) or ()) == statuses, action
    # Every action the CSMS does not send; DataTransfer goes both ways.
    csms_calls = set(scenario_format.ANSWER_STATUSES)
    expected = (ocpp_schemas.requests() - csms_calls) | {"DataTransfer"}
    assert set(scenario_format.CHARGER_CALLS) == expected


def test_a_text_with_a_runtime_variable_is_not_held_to_its_written_length() -> None:
    """`TAG-${charge_point_id}` is 22 characters as written but as long as each charger's
    id makes it: refused before ("must be at most 20 characters")."""
    scenario = parse(
        textwrap.dedent(
            """\
            name: per-charger-tags
            description: x
            chargers: {template: {count: 1, prefix: CP}}
            steps:
              - plug_in: {}
              - present_id_tag: {id_tag: "TAG-${charge_point_id}"}
            """
        ),
        file="tags.yaml",
    )
    assert scenario.steps[1].args == {"id_tag": "TAG-${charge_point_id}"}
    # Written out, the limit holds.
    assert any(
        "must be at most 20 characters" in error
        for error in errors_of(
            """\
            name: long
            description: x
            chargers: {template: {count: 1}}
            steps:
              - present_id_tag: {id_tag: "TAG-ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
            """
        )
    )


def test_an_id_tag_a_charger_could_not_send_is_named_by_its_line() -> None:
    """It was refused only at run time, by the charger, after the run had started."""
    text = """\
        name: tags
        description: idTags a charger could not send
        chargers: {template: {count: 1}}
        steps:
          - plug_in: {connector: 1}
          - present_id_tag: {id_tag: "Zoë-1"}
          - present_id_tag: {id_tag: "${tag}"}
        """
    found = errors_of(text, tag="TAB\tHERE")
    assert len(found) == 2, found
    assert all("printable ASCII" in error for error in found)
    assert found[0].startswith("smoke.yaml:6:") and "steps[1].present_id_tag.id_tag" in found[0]
    assert found[1].startswith("smoke.yaml:7:")


def test_a_value_of_the_wrong_form_is_said_in_words_not_as_a_regular_expression() -> None:
    # The schema checks these by a pattern; a user reads what the value must be.
    errors = errors_of(
        """\
        name: forms
        description: x
        variables: {"my-tag": A}
        chargers:
          template: {count: 1, prefix: "my prefix", csms_url: "http://csms:9000/ocpp"}
        steps:
          - trigger: {url: "csms-control/start"}
        """
    )
    assert errors == [
        "smoke.yaml:3:13: variables.my-tag: a variable's name must be letters, digits and "
        "'_', not starting with a digit",
        "smoke.yaml:5:32: chargers.template.prefix: must be 1 to 20 letters, digits, '.', "
        "'_', '~' or '-'",
        "smoke.yaml:5:55: chargers.template.csms_url: must be a ws:// or wss:// URL",
        "smoke.yaml:7:20: steps[0].trigger.url: must be an http:// or https:// URL",
    ]
    assert not any("pattern" in error for error in errors)


def test_a_bad_value_a_variable_gives_names_the_variable() -> None:
    # `--var timeout=abc` (or the API's variables): the file's line reads
    # `timeout: "${timeout}"`, and the message said only "must be a duration".
    errors = errors_of(GOOD, timeout="abc", id_tag=7)
    assert errors == [
        "smoke.yaml:10:30: steps[1].present_id_tag.id_tag: must be a string (from ${id_tag}, "
        "which is no text here: quote it to make it text, --var 'id_tag=\"...\"' or "
        '"..." in the file)',
        "smoke.yaml:11:39: steps[2].wait.timeout: must be a duration (a number of seconds, "
        'or a string such as "30s", "2m") (from ${timeout})',
    ]


def test_a_fault_or_override_value_the_engine_refuses_is_a_format_error_with_a_hint() -> None:
    """A typo in a fault's error code or in an override used to pass the format, set up
    and connect the run's chargers, and then error the step at the engine (exit code 3,
    as if something could not run), where the other typos of a file are refused before
    anything runs (exit code 2), with their line and the nearest right name."""
    errors = errors_of(
        """\
        name: typos
        description: x
        chargers: {template: {count: 1}}
        steps:
          - fault: {error_code: GroundFailur}
          - override: {action: RemoteStartTransacton, next: true, status: Accepted}
          - override: {action: RemoteStartTransaction, next: true, status: Acepted}
          - override: {action: Reset, every: true, call_error: NotSuported}
          - override: {action: ClearCache, every: true, delay: 1}
          - override: {action: UpdateFirmware, next: true, status: Accepted}
          - override: {action: Rest, clear: true}
        """
    )
    assert errors == [
        "smoke.yaml:5:25: steps[0].fault.error_code: 'GroundFailur' is not an error code a "
        "fault reports in OCPP 1.6; did you mean GroundFailure?",
        "smoke.yaml:6:24: steps[1].override.action: 'RemoteStartTransacton' is not an action "
        "a CSMS sends in OCPP 1.6; did you mean RemoteStartTransaction?",
        "smoke.yaml:7:68: steps[2].override.status: 'Acepted' is not a status of "
        "RemoteStartTransaction's answer in OCPP 1.6; did you mean Accepted?",
        "smoke.yaml:8:56: steps[3].override.call_error: 'NotSuported' is not a CALLERROR code "
        "in OCPP 1.6; did you mean NotSupported?",
        "smoke.yaml:10:60: steps[5].override.status: the answer to UpdateFirmware has no "
        "status: use call_error, delay or no_answer",
        "smoke.yaml:11:24: steps[6].override.action: 'Rest' is not an action a CSMS sends "
        "in OCPP 1.6; did you mean Reset?",
    ]


def test_a_fault_or_override_value_a_variable_gives_is_checked_when_given() -> None:
    errors = errors_of(
        """\
        name: typos
        description: x
        variables: {code: GroundFailure, answer: Accepted}
        chargers: {template: {count: 1}}
        steps:
          - fault: {error_code: "${code}"}
          - override: {action: RemoteStartTransaction, next: true, status: "${answer}"}
        """,
        code="Bogus",
        answer="Nope",
    )
    assert errors == [
        "smoke.yaml:6:25: steps[0].fault.error_code: 'Bogus' is not an error code a fault "
        "reports in OCPP 1.6 (one of: ConnectorLockFailure, EVCommunicationError, "
        "GroundFailure, HighTemperature, InternalError, LocalListConflict, OtherError, "
        "OverCurrentFailure, OverVoltage, PowerMeterFailure, PowerSwitchFailure, "
        "ReaderFailure, ResetFailure, UnderVoltage, WeakSignal) (from ${code})",
        "smoke.yaml:7:68: steps[1].override.status: 'Nope' is not a status of "
        "RemoteStartTransaction's answer in OCPP 1.6 (one of: Accepted, Rejected) "
        "(from ${answer})",
    ]


def test_a_connector_the_templates_chargers_do_not_have_is_a_format_error() -> None:
    """A step on connector 3 of a template made with 2 used to set up and connect the run's
    chargers and then error at the engine ("has no connector 3", exit code 3), although the
    file alone says it cannot run: said here, before anything runs."""
    errors = errors_of(
        """\
        name: connectors
        description: x
        chargers: {template: {count: 2, connectors: 2}}
        steps:
          - plug_in: {connector: 2}
          - plug_in: {connector: 3}
          - wait: {status: Charging, connector: 4}
          - expect: {status: Available, connector: 2}
          - stop: {connector: "${n}"}
        """,
        n=5,
    )
    assert errors == [
        "smoke.yaml:6:26: steps[1].plug_in.connector: the template's chargers have 2 "
        "connectors: there is no connector 3",
        "smoke.yaml:7:41: steps[2].wait.connector: the template's chargers have 2 "
        "connectors: there is no connector 4",
        "smoke.yaml:9:23: steps[4].stop.connector: the template's chargers have 2 "
        "connectors: there is no connector 5 (from ${n})",
    ]
    one = errors_of(
        """\
        name: connectors
        description: x
        chargers: {template: {count: 1}}
        steps:
          - unplug: {connector: 2}
        """
    )
    assert one == [
        "smoke.yaml:5:25: steps[0].unplug.connector: the template's chargers have 1 "
        "connector: there is no connector 2"
    ]


def test_a_connector_of_existing_chargers_is_left_to_the_run() -> None:
    """Chargers chosen by id, pattern or location have as many connectors as they have:
    the file cannot tell."""
    parse(
        textwrap.dedent(
            """\
            name: connectors
            description: x
            chargers: {ids: [CP-1]}
            steps:
              - plug_in: {connector: 7}
            """
        ),
        file="smoke.yaml",
    )


def test_a_fault_in_the_way_the_engine_would_refuse_is_a_format_error() -> None:
    """Close codes a charger may not send, and delays, latencies, cuts and clock skews
    beyond the engine's bounds, used to pass the format and error the step once the run's
    chargers were up (exit code 3): the engine's own checks now run on the file."""
    errors = errors_of(
        """\
        name: bounds
        description: x
        chargers: {template: {count: 1}}
        steps:
          - close: {code: 1005}
          - close: {code: 2000}
          - network: {close_code: 1015}
          - network: {latency_ms: 70000}
          - network: {jitter_ms: 1.5}
          - network: {cut: 0.5}
          - network: {cut: 100000}
          - clock_skew: {seconds: 1000000000000}
          - override: {action: Reset, every: true, delay: 2h}
          - plug_in: {target_soc: 0}
          - close: {code: 3000}
          - network: {cut: 24h, latency_ms: 0}
        """
    )
    assert errors == [
        "smoke.yaml:5:19: steps[0].close.code: close code 1005 cannot be sent: use "
        "1000-1003, 1007-1014 or 3000-4999 (1004-1006 and 1015 are reserved)",
        "smoke.yaml:6:19: steps[1].close.code: close code 2000 cannot be sent: use "
        "1000-1003, 1007-1014 or 3000-4999 (1004-1006 and 1015 are reserved)",
        "smoke.yaml:7:27: steps[2].network.close_code: close code 1015 cannot be sent: use "
        "1000-1003, 1007-1014 or 3000-4999 (1004-1006 and 1015 are reserved)",
        "smoke.yaml:8:27: steps[3].network.latency_ms: latency_ms must be within 0 and 60000",
        "smoke.yaml:9:26: steps[4].network.jitter_ms: jitter_ms must be a whole number of "
        "milliseconds",
        "smoke.yaml:10:20: steps[5].network.cut: a network cut lasts 1 to 86400 seconds",
        "smoke.yaml:11:20: steps[6].network.cut: a network cut lasts 1 to 86400 seconds",
        "smoke.yaml:12:27: steps[7].clock_skew.seconds: clock skew seconds must be within "
        "-3.1536e+08 and 3.1536e+08",
        "smoke.yaml:13:51: steps[8].override.delay: delay must be within 0.001 and 3600",
        "smoke.yaml:14:27: steps[9].plug_in.target_soc: must be at least 1",
        "smoke.yaml:16:14: steps[11].network: cut and latency_ms do not go together: one "
        "network change per step",
    ]


def test_a_templates_configuration_is_checked_as_the_admin_checks_a_chargers() -> None:
    """A template's configuration was stored as written: a value the charger's own form
    refuses (MeterValueSampleInterval "abc") and a key that differs from an OCPP key only
    in case (a typing slip, which a CSMS could never read) went into the run unseen."""
    errors = errors_of(
        """\
        name: configuration
        description: x
        chargers:
          template:
            count: 1
            configuration:
              MeterValueSampleInterval: abc
              heartbeatinterval: "60"
              LocalAuthorizeOffline: "maybe"
              HeartbeatInterval: "${interval}"
              AllowOfflineTxForUnknownId: true
              ConnectionTimeOut: 60
              VendorSpecificKey: anything
        steps:
          - wait: {seconds: 1}
        """,
        interval=-5,
    )
    assert errors == [
        "smoke.yaml:7:33: chargers.template.configuration.MeterValueSampleInterval: "
        "MeterValueSampleInterval takes a whole number, not 'abc'.",
        "smoke.yaml:8:7: chargers.template.configuration.heartbeatinterval: "
        "'heartbeatinterval' differs from the OCPP key HeartbeatInterval only in case, and "
        "chargers compare key names without regard to case: write HeartbeatInterval.",
        "smoke.yaml:9:30: chargers.template.configuration.LocalAuthorizeOffline: "
        "LocalAuthorizeOffline takes true or false, not 'maybe'.",
        "smoke.yaml:10:26: chargers.template.configuration.HeartbeatInterval: "
        "HeartbeatInterval must be at least 0. (from ${interval})",
    ]


def test_a_templates_configuration_may_not_set_the_authorization_key() -> None:
    """QA: the charger's form refuses an AuthorizationKey row, as the import and the API
    do, but a template's was taken: stored as a configuration row, in clear rather than
    sealed as the charger's own key is, and shown in the admin's list of keys."""
    for value in ('"00112233445566778899aabbccddeeff"', '"${auth_key}"'):
        errors = errors_of(
            f"""\
            name: configuration
            description: x
            variables: {{auth_key: 00112233445566778899aabbccddeeff}}
            chargers:
              template:
                count: 1
                configuration:
                  AuthorizationKey: {value}
            steps:
              - wait: {{seconds: 1}}
            """
        )
        assert len(errors) == 1 and errors[0].startswith(
            "smoke.yaml:8:7: chargers.template.configuration.AuthorizationKey: "
            "AuthorizationKey is write-only: give it as the template's authorization_key"
        ), errors


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        (
            "security_profile: 1",
            "chargers.template.security_profile: security profile 1 needs the template's "
            "authorization_key",
        ),
        (
            'authorization_key: "${csms_password}"',
            "chargers.template.authorization_key: an authorization_key is sent with "
            "security_profile 1 or 2 only",
        ),
        (
            "security_profile: 1, authorization_key: not-hex-at-all-SECRET",
            "chargers.template.authorization_key: AuthorizationKey takes 16 to 20 bytes",
        ),
        (
            'security_profile: 2, authorization_key: "${csms_password}", '
            "csms_url: ws://127.0.0.1:9000/ocpp",
            "chargers.template.security_profile: security profile 2 needs a wss:// csms_url",
        ),
        ("security_profile: 3", "chargers.template.security_profile: must be 0, 1 or 2"),
    ],
)
def test_a_templates_security_profile_and_key_are_checked_as_a_chargers_are(
    fields: str, said: str
) -> None:
    errors = errors_of(
        f"""\
        name: basic-auth
        description: x
        variables: {{csms_password: 00112233445566778899aabbccddeeff}}
        chargers:
          template: {{count: 1, {fields}}}
        steps:
          - wait: {{seconds: 1}}
        """
    )
    assert len(errors) == 1 and said in errors[0], errors
    assert "SECRET" not in errors[0]  # a key written out is never quoted


def test_a_template_on_security_profile_1_with_its_key_in_a_secret_variable_loads() -> None:
    scenario = parse(
        textwrap.dedent(
            """\
        name: basic-auth
        description: x
        variables: {csms_password: 00112233445566778899aabbccddeeff}
        chargers:
          template: {count: 1, security_profile: 1, authorization_key: "${csms_password}"}
        steps:
          - wait: {seconds: 1}
        """
        ),
        file="smoke.yaml",
    )
    assert scenario.name == "basic-auth"


def test_a_templates_csms_url_is_checked_as_a_chargers_is() -> None:
    """A template's CSMS URL with a password in it (a refused URL) passed the format and
    errored the run's setup (exit code 3): the file alone says it cannot run."""
    errors = errors_of(
        """\
        name: url
        description: x
        variables: {csms_password: hunter22}
        chargers:
          template: {count: 1, csms_url: "ws://cp:${csms_password}@127.0.0.1:9000/ocpp"}
        steps:
          - wait: {seconds: 1}
        """
    )
    assert errors == [
        "smoke.yaml:5:34: chargers.template.csms_url: The CSMS URL must not hold a user name "
        "or password. Set the charger's AuthorizationKey and security profile 1 or 2 "
        "instead: the charger then sends its id and that key as HTTP Basic credentials, and "
        "the key is never shown."
    ]
    assert "hunter22" not in "".join(errors)


@pytest.mark.parametrize(
    ("spread", "said"),
    [
        (".inf", "must be a finite number of seconds"),
        ("100000", "must be at most 3600 seconds (an hour)"),
    ],
)
def test_a_spread_must_be_finite_and_at_most_an_hour(spread: str, said: str) -> None:
    """`spread: .inf` passed the format, and the run then could not store its result (a
    start delay of Infinity is no JSON): a traceback, and a run left "running" for good.
    A spread of 100000 (a typo for 100) held the run a day, as a wait's would."""
    errors = errors_of(
        f"""\
        name: spread
        description: x
        spread: {spread}
        chargers: {{template: {{count: 1}}}}
        steps:
          - wait: {{seconds: 1}}
        """
    )
    assert errors == [f"smoke.yaml:3:9: spread: {said}"]


def test_a_number_that_is_not_finite_is_a_format_error_wherever_it_is() -> None:
    """YAML's .nan and .inf are numbers the schema's bounds let through (NaN compares false
    with every bound): `response_time: {p50: .nan}` passed every run whatever the CSMS did,
    `max_power_kw: .inf` broke the run's setup, `soc: .nan` errored the step at the engine."""
    errors = errors_of(
        """\
        name: finite
        description: x
        chargers: {template: {count: 1, max_power_kw: .inf}}
        steps:
          - expect: {response_time: {p50: .nan}}
          - plug_in: {soc: .nan, target_soc: -.inf}
          - network: {drop_rate: .nan}
          - expect: {heartbeat_interval_at_least: .inf}
          - trigger: {url: "http://x", body: {limit: .nan}}
          - wait: {seconds: .inf}
        """
    )
    assert errors == [
        "smoke.yaml:3:47: chargers.template.max_power_kw: must be a finite number",
        "smoke.yaml:5:35: steps[0].expect.response_time.p50: must be a finite number",
        "smoke.yaml:6:20: steps[1].plug_in.soc: must be a finite number",
        "smoke.yaml:6:38: steps[1].plug_in.target_soc: must be at least 1",
        "smoke.yaml:7:26: steps[2].network.drop_rate: must be a finite number",
        "smoke.yaml:8:43: steps[3].expect.heartbeat_interval_at_least: must be a finite number",
        "smoke.yaml:9:46: steps[4].trigger.body.limit: must be a finite number",
        "smoke.yaml:10:21: steps[5].wait.seconds: must be a finite number of seconds",
    ]


def test_a_variable_that_is_not_finite_is_said_once_where_it_is() -> None:
    """An unused variable of .inf is stored with the run all the same, and the run could
    not store it (IntegrityError, a traceback, exit code 3): said at the variable. A used
    one is said where it is used, naming it, not twice."""
    errors = errors_of(
        """\
        name: finite
        description: x
        variables: {unused: .inf, used: .nan}
        chargers: {template: {count: 1}}
        steps:
          - expect: {heartbeat_interval_at_least: "${used}"}
        """
    )
    assert errors == [
        "smoke.yaml:3:21: variables.unused: must be a finite number",
        "smoke.yaml:6:43: steps[0].expect.heartbeat_interval_at_least: must be a finite "
        "number (from ${used})",
    ]


def test_a_format_error_never_shows_a_secret_variables_value() -> None:
    """A misspelt value that a secret variable gave was quoted in the error ("'NopeSecret'
    is not a status of ...'s answer"), on the terminal and in the API's 422, where the run
    hides such values everywhere else."""
    errors = errors_of(
        """\
        name: secrets
        description: x
        variables: {auth_status: NopeSecretValue1, api_key_interval: abcSecret3}
        chargers:
          template:
            count: 1
            configuration: {HeartbeatInterval: "${api_key_interval}"}
        steps:
          - expect: {answer: BootNotification, status: "${auth_status}"}
          - override: {action: Reset, next: true, status: "${auth_status}"}
        """
    )
    assert errors == [
        "smoke.yaml:7:40: chargers.template.configuration.HeartbeatInterval: "
        "HeartbeatInterval takes a whole number, not '********'. (from ${api_key_interval})",
        "smoke.yaml:9:48: steps[0].expect.status: '********' is not a status of "
        "BootNotification's answer in OCPP 1.6 (one of: Accepted, Pending, Rejected) "
        "(from ${auth_status})",
        "smoke.yaml:10:51: steps[1].override.status: '********' is not a status of Reset's "
        "answer in OCPP 1.6 (one of: Accepted, Rejected) (from ${auth_status})",
    ]
