"""Docker's --format templates (cli/go_format.py): the subset of Go's text/template,
values printed as Go prints them, errors in Go's words, and Docker's table
layout. Expected strings are what docker 28 prints for the same input."""

from __future__ import annotations

import pytest

from juggler.cli.go_format import (
    Struct,
    TemplateError,
    docker_format,
    go_text,
    parse,
    tabwrite,
)

INSPECT = {
    "Id": "a" * 64,
    "Name": "/web",
    "Args": ["-c", "x<y"],
    "State": {"Status": "running", "Running": True, "Pid": 1234, "ExitCode": 0,
              "Health": None},
    "Config": {"Labels": {"b": "2", "a": "1"}, "Env": ["A=1"]},
    "HostConfig": {"NanoCpus": 500000000, "Memory": 67108864},
}


def render(template: str, data: object = INSPECT) -> str:
    return parse(template).execute(data)


@pytest.mark.parametrize(("template", "expected"), [
    ("{{.Name}}", "/web"),
    ("{{.State.Status}} {{.State.Pid}} {{.State.Running}}", "running 1234 true"),
    ("pid={{.State.Pid}}\n", "pid=1234\n"),
    # docker inspect -f '{{json .Config.Labels}} {{.Config.Labels}} {{.Args}}' (docker 28)
    ("{{json .Config.Labels}} {{.Config.Labels}} {{.Args}}",
     '{"a":"1","b":"2"} map[a:1 b:2] [-c x<y]'),
    ("{{json .Args}}", '["-c","x<y"]'),            # no HTML escaping (SetEscapeHTML(false))
    ("{{json .State.Health}}", "null"),
    ("{{.State.Health}}", "<nil>"),
    ("{{.HostConfig.NanoCpus}}", "500000000"),
    ("{{.Name | upper}}", "/WEB"),
    ("{{join .Args \",\"}}", "-c,x<y"),
    ("{{index .Config.Labels \"a\"}}", "1"),
    ("{{len .Args}}", "2"),
    ("{{truncate .Name 3}}", "/we"),
    ("{{lower \"ABC\"}} {{title \"hello world\"}}", "abc Hello World"),
    ("{{split \"a,b\" \",\"}}", "[a b]"),
    ("a {{- .Name -}} b", "a/webb"),
    ("a {{- /* a comment */ -}} b", "ab"),
    ("{{\"tab\\there\"}} {{`raw\\t`}} {{42}} {{true}}", "tab\there raw\\t 42 true"),
])
def test_templates_render_as_docker_does(template: str, expected: str) -> None:
    assert render(template) == expected


def test_json_of_everything_keeps_the_server_s_order() -> None:
    assert render("{{json .State}}") == \
        '{"Status":"running","Running":true,"Pid":1234,"ExitCode":0,"Health":null}'


@pytest.mark.parametrize(("value", "expected"), [
    ("s", "s"), (True, "true"), (False, "false"), (7, "7"), (None, "<nil>"),
    (1.5, "1.5"), (5e8, "5e+08"), (100000.0, "100000"), (1234567.0, "1.234567e+06"),
    (0.0001, "0.0001"), (0.00001, "1e-05"), (-2.5, "-2.5"), (0.0, "0"),
    ([1, "a", None], "[1 a <nil>]"), ({"z": 1, "a": [True]}, "map[a:[true] z:1]"),
])
def test_values_print_as_go_s_fmt(value: object, expected: str) -> None:
    assert go_text(value) == expected


@pytest.mark.parametrize(("template", "message"), [
    # docker 28: template parsing error: template: :1:2: executing "" at <.Nope>: map has
    # no entry for key "Nope"
    ("{{.Nope}}", 'template: :1:2: executing "" at <.Nope>: map has no entry for key "Nope"'),
    ("{{.State.Nope}}",
     'template: :1:8: executing "" at <.State.Nope>: map has no entry for key "Nope"'),
    ("x\n{{.State.Nope}}",
     'template: :2:8: executing "" at <.State.Nope>: map has no entry for key "Nope"'),
    ("{{.State.Health.Status}}", "nil pointer evaluating .State.Health.Status"),
    ("{{.State.Pid.X}}", "can't evaluate field X in type int"),
    ("{{.Name \"arg\"}}", "can't give argument to non-function .Name"),
])
def test_execution_errors_say_where_and_why(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as e:
        render(template)
    assert message in str(e.value)


@pytest.mark.parametrize(("template", "message"), [
    ("{{.Name", "template: :1: unclosed action"),
    ("{{foo .}}", 'template: :1: function "foo" not defined'),
    ("{{if .Name}}x{{end}}", '"if" is not supported'),
    ("{{range .Args}}{{.}}{{end}}", '"range" is not supported'),
    ("{{$x := .Name}}", "variables ($x) are not supported"),
    ("{{(.Name)}}", "parentheses are not supported"),
    ("{{.Name.}}", 'unexpected "." after .Name'),
    ("{{}}", "missing value for command"),
    ("{{.Name |}}", "missing command"),
    ("{{\"open}}", "unclosed action"),
    ("{{json upper .Name}}", 'function "upper" as an argument'),
])
def test_parse_errors_are_clear(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as e:
        parse(template)
    assert message in str(e.value)


def test_a_struct_has_a_fixed_set_of_fields_and_methods() -> None:
    ctx = Struct("container", {"Names": "web", "Label": lambda key: {"a": "1"}.get(key, "")})
    assert parse('{{.Names}} {{.Label "a"}}/{{.Label "b"}}').execute(ctx) == "web 1/"
    with pytest.raises(TemplateError) as e:
        parse("{{.Foo}}").execute(ctx)
    # docker 28: ... at <.Foo>: can't evaluate field Foo in type *formatter.ContainerContext
    assert 'at <.Foo>: can\'t evaluate field Foo in type container' in str(e.value)


def test_docker_format_strips_table_and_turns_escapes_into_tabs() -> None:
    assert docker_format("table {{.ID}}\\t{{.Names}}") == (True, "{{.ID}}\t{{.Names}}")
    assert docker_format("{{.ID}}\\n") == (False, "{{.ID}}\n")
    assert docker_format("  {{.ID}} ") == (False, "{{.ID}}")


def test_tabwrite_is_go_s_tabwriter_with_docker_s_settings() -> None:
    # docker ps --format 'table {{.ID}}\t{{.Names}}\t{{.Labels}}' on two containers
    text = "CONTAINER ID\tNAMES\tLABELS\naaaaaaaaaaaa\tweb\ta=1,b=2\ncccccccccccc\tdb\t"
    assert tabwrite(text) == ("CONTAINER ID   NAMES     LABELS\n"
                              "aaaaaaaaaaaa   web       a=1,b=2\n"
                              "cccccccccccc   db        ")
    # A column is as wide as its widest cell + 3, at least 10; the last cell is not padded.
    assert tabwrite("a\tb\nlonger-than-ten\tc", minwidth=10, padding=3) == \
        "a" + " " * 17 + "b\nlonger-than-ten   c"
    # Lines without the column end the block: the next block is laid out on its own.
    assert tabwrite("x\ty\nno tabs here\nlong cell here\tz") == \
        "x         y\nno tabs here\nlong cell here   z"
