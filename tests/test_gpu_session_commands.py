"""Every benchmark command of ``bench/gpu_session.sh`` parses.

A GPU lease is 15 minutes: a flag a script does not take (or lost in a rename) would fail only there, after
mamba-ssm's build, and cost the lease that step.  Each ``python3 bench/<script>.py ...`` line of the session script is
run here as its own ``__main__`` with the session's words, up to the script's argparse call, which must accept them.
(The tile configurations and case names those words carry are checked in ``test_bench_baseline.py``.)
"""

import argparse
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SESSION = (ROOT / "bench" / "gpu_session.sh").read_text()
SDIST = ".whl/mamba_ssm-2.3.2.post1.tar.gz"
# Scripts the session calls that take bare paths, not flags: nothing to parse.
PATH_ONLY = {"bench/build_mamba_ssm.py", "bench/summarize.py"}


def session_commands():
    """(script, argv) of every ``python3 bench/...`` command in the session script, with its shell words expanded."""
    variables = {"OUT": "/tmp/gpu-session"}
    for name, value in re.findall(r'^(\w+)="([^"]*)"', SESSION, re.MULTILINE):  # as bash assigns them, in order:
        value = value.replace("\\\n", "")  # a backslash-newline inside double quotes joins the lines
        variables[name] = re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], value)  # earlier variables expanded
    commands = []
    for script, rest in re.findall(r"python3 (bench/\w+\.py)((?:[^\n\\]|\\\n)*)", SESSION):
        # Up to a redirection, a subshell's end, the next command or a comment.
        words = re.split(r"\s(?:>|2>|\)|#)|;|&&", rest.replace("\\\n", " "))[0]
        words = words.replace('"${mamba_args[@]}"', f"--mamba-sdist {SDIST}").replace('"$SDIST"', SDIST)
        words = re.sub(r'"([^"]*)\$\(date \+%F\)([^"]*)"', r"\g<1>2026-01-01\g<2>", words)
        words = re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], words)
        commands.append((script, shlex.split(words)))
    return commands


COMMANDS = [(script, argv) for script, argv in session_commands() if script not in PATH_ONLY]


class Parsed(Exception):
    """Raised in place of running the benchmark once its arguments parsed."""


def test_the_session_script_is_read_whole():
    # The regular expressions above find every command (a change to the script's layout that hid some would make
    # the test below check less without failing).
    found = session_commands()
    assert len(found) == SESSION.count("python3 bench/") >= 20
    assert {script for script, _ in found} == {
        "bench/build_mamba_ssm.py", "bench/summarize.py", "bench/scan_bench.py", "bench/model_bench.py",
        "bench/profile_kernels.py", "bench/host_overhead.py", "bench/one_pass_bench.py"}
    assert all("$" not in word and not word.startswith((">", "(")) for _, argv in found for word in argv)


@pytest.mark.parametrize("script,argv", COMMANDS, ids=[f"{s[6:-3]}-{i}" for i, (s, _) in enumerate(COMMANDS)])
def test_gpu_session_command_parses(monkeypatch, capsys, script, argv):
    parse_args = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        parse_args(self, args, namespace)  # argparse exits (status 2) on a word it does not take
        raise Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_only)
    monkeypatch.setattr(sys, "argv", [script, *argv])
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    try:
        runpy.run_path(str(ROOT / script), run_name="__main__")
    except Parsed:
        return
    except SystemExit as exit:
        pytest.fail(f"{script} {shlex.join(argv)}: exit {exit.code}\n{capsys.readouterr().err[-2000:]}")
    pytest.fail(f"{script} ran to its end without parsing arguments with argparse")
