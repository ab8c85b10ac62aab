"""Templated secrets and configs: the agent's pure expander against what a real Swarm produced.

The expected texts and errors are what a Docker 20.10 Swarm wrote into task files and task
errors on this machine for the same templates (docs/engineapi.md, "Secrets and configs"),
with that run's IDs replaced by the test's.
"""

from __future__ import annotations

import pytest

from nodeagent.agent.payloads import FileTarget, file_target, task_context
from nodeagent.agent.templates import TemplateContext, TemplateError, expand, expand_payload

CTX = TemplateContext(
    service_id="n3jtgugmvk66985cvnk6k83kz", service_name="sx_t1", service_labels={"tier": "front"},
    node_id="2fel6givjj0eade7wt04zx21z", node_hostname="manager1", node_os="linux",
    node_architecture="x86_64",
    task_id="0bkd8gti5p1ddueppwu8xdv7d", task_name="sx_t1.1.0bkd8gti5p1ddueppwu8xdv7d", task_slot="1",
    env=["FOO=bar", "EQ=a=b", "NOVALUE"], secrets={"pw": b"hunter2\n"},
    configs={"/etc/plain": b"plain-config"},
)  # fmt: skip


def test_fields_functions_comments_and_trim_markers_as_swarm() -> None:
    template = (
        "svc={{.Service.Name}} id={{.Service.ID}} lbl={{.Service.Labels}} nid={{.Node.ID}} "
        "task={{.Task.Name}} tid={{.Task.ID}} slot={{.Task.Slot}}\n"
        'env={{env "FOO"}} eq={{env "EQ"}} missing=[{{env "NOPE"}}] [{{env "NOVALUE"}}]\n'
        'secret=[{{secret "pw"}}]\nconfig=[{{config "/etc/plain"}}]\n'
        'A {{- " trimmed" -}}  \n   end\n'
        '{{ join "," "a" "b" }}|{{.Service.Labels.tier}}|{{ "lit" }}|{{/* comment */}}|'
        "{{- /* trimmed comment */ -}} |\n"
    )
    # What the real Swarm wrote (its run had no node hostname or platform: see the next test).
    assert expand(template, CTX) == (
        "svc=sx_t1 id=n3jtgugmvk66985cvnk6k83kz lbl=map[tier:front] nid=2fel6givjj0eade7wt04zx21z "
        "task=sx_t1.1.0bkd8gti5p1ddueppwu8xdv7d tid=0bkd8gti5p1ddueppwu8xdv7d slot=1\n"
        "env=bar eq=a=b missing=[] []\n"
        "secret=[hunter2\n]\nconfig=[plain-config]\n"
        "A trimmedend\n"
        "a,b|front|lit|||\n"
    )
    assert expand("x={{.Service}}", CTX) == "x={n3jtgugmvk66985cvnk6k83kz sx_t1 map[tier:front]}"


def test_node_fields_and_index() -> None:
    text = '{{.Node.Hostname}} {{.Node.Platform.OS}}/{{.Node.Platform.Architecture}} {{.Node.Platform}} ' \
           '{{index .Service.Labels "tier"}}[{{index .Service.Labels "none"}}] {{`raw "x"`}}'
    assert expand(text, CTX) == 'manager1 linux/x86_64 {x86_64 linux} front[] raw "x"'
    assert expand("{{.Node}}", CTX) == "{2fel6givjj0eade7wt04zx21z manager1 {x86_64 linux}}"


@pytest.mark.parametrize(("template", "error"), [
    # Each message is a real Swarm's task error (after "failed to expand templated config ID: ").
    ("x={{.Foo}}", 'template: expansion:1:4: executing "expansion" at <.Foo>: can\'t evaluate field Foo in '
                   "type *template.PayloadContext"),
    ('x={{secret "nosuch"}}', 'template: expansion:1:4: executing "expansion" at <secret "nosuch">: error '
                              "calling secret: secret target nosuch not found"),
    ("x={{nosuch}}", 'template: expansion:1: function "nosuch" not defined'),
    ("x={{.Service.Labels.missing}}", 'template: expansion:1:12: executing "expansion" at '
                                      '<.Service.Labels.missing>: map has no entry for key "missing"'),
    ("x={{.Foo", "template: expansion:1: unclosed action"),
    ("x={{env}}", 'template: expansion:1:4: executing "expansion" at <env>: wrong number of args for env: '
                  "want 1 got 0"),
    ("x={{ .Task.Name.Foo }}", 'template: expansion:1:10: executing "expansion" at <.Task.Name.Foo>: '
                               "can't evaluate field Foo in type string"),
    # Not recorded, same rules: positions count bytes from the start of the line.
    ('a\nbc {{config "/nope"}}', 'template: expansion:2:5: executing "expansion" at <config "/nope">: error '
                                 "calling config: config target /nope not found"),
    ("{{.Service.Nope}}", 'template: expansion:1:10: executing "expansion" at <.Service.Nope>: can\'t '
                          "evaluate field Nope in type struct { ID string; Name string; "
                          "Labels map[string]string }"),
    ("{{/* open", "template: expansion:1: unclosed comment"),
])  # fmt: skip
def test_errors_are_gos(template: str, error: str) -> None:
    with pytest.raises(TemplateError) as caught:
        expand(template, CTX)
    assert str(caught.value) == error


@pytest.mark.parametrize("template", [
    "{{ if .Service.Name }}x{{ end }}", "{{ range .Service.Labels }}{{ end }}",
    "{{ .Service.Name | printf }}",
    '{{ printf "%s" "x" }}', "{{ $x := 1 }}", "{{ . }}", "{{ eq 1 1 }}", '{{ env (print "x") }}',
    '{{ "\\x41" }}',
])  # fmt: skip
def test_what_is_not_supported_is_refused_by_name(template: str) -> None:
    with pytest.raises(TemplateError, match="swarmlet does not support"):
        expand(template, CTX)


def test_payloads_expand_only_with_the_golang_driver() -> None:
    plain = expand_payload(b"{{.Service.Name}}", None, CTX)
    assert plain.data == b"{{.Service.Name}}" and not plain.sensitive
    done = expand_payload(b"{{.Service.Name}}", {"Name": "golang"}, CTX)
    assert done.data == b"sx_t1" and not done.sensitive
    assert expand_payload(b'pw={{secret "pw"}}', {"Name": "golang"}, CTX).sensitive  # kept off disk
    with pytest.raises(TemplateError, match=r"^unrecognized template type$"):
        expand_payload(b"x", {"Name": "foo"}, CTX)


def test_task_context_from_a_stored_task_and_delivered_payloads() -> None:
    task = {
        "ID": "tid", "ServiceID": "sid", "Slot": 2, "NodeID": "nid",
        "ServiceAnnotations": {"Name": "web", "Labels": {"a": "b"}},
        "Spec": {"ContainerSpec": {
            "Env": ["FOO=bar"],
            "Secrets": [{"SecretID": "s1", "SecretName": "db_pass", "File": {"Name": "pw"}}],
            "Configs": [{"ConfigID": "c1", "ConfigName": "index", "File": {"Name": "/www/index.html"}}]}},
    }  # fmt: skip
    ctx = task_context(task, hostname="worker1", secrets={"s1": b"hunter2"}, configs={"c1": b"<h1>"})
    text = '{{.Task.Name}} {{.Node.Hostname}} {{secret "pw"}} {{config "/www/index.html"}} {{env "FOO"}}'
    assert expand(text, ctx) == "web.2.tid worker1 hunter2 <h1> bar"
    global_task = {**task, "Slot": 0}
    global_ctx = task_context(global_task)
    assert global_ctx.task_slot == "nid" and global_ctx.task_name == "web.nid.tid"


def test_file_targets_and_their_defaults() -> None:
    cli = {"File": {"Name": "db_pass", "UID": "0", "GID": "0", "Mode": 292}}
    assert file_target("secret", cli) == FileTarget("/run/secrets/db_pass", 0, 0, 0o444)
    pem = {"File": {"Name": "/etc/ssl/site.pem", "UID": "0", "GID": "0", "Mode": 256}}
    assert file_target("secret", pem) == FileTarget("/etc/ssl/site.pem", 0, 0, 0o400)
    # What a client that sent only the name gets (Swarm stores UID "", GID "", Mode 0).
    assert file_target("config", {"File": {"Name": "app.conf", "UID": "", "GID": "", "Mode": 0}}) \
        == FileTarget("/app.conf", 0, 0, 0o444)
    www = {"File": {"Name": "/www/index.html", "UID": "33", "GID": "33"}}
    assert file_target("config", www) == FileTarget("/www/index.html", 33, 33, 0o444)
