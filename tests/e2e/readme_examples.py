#!/usr/bin/env python3
"""Runs the README's runnable examples as written.

    readme_examples.py --umamba BUILD/umamba --readme README.md --source SRC_DIR --work DIR

Every fenced block whose info string is exactly `sh` is runnable; `bash` blocks are illustrations
that need the user's data, a GPU or a trained model. The `sh` blocks run in order in one scratch
folder (so a later example may use an earlier one's output) holding a link `examples` to the
repository's examples/ folder, with a `umamba` on the PATH that is the built binary. A line ending
in a backslash continues on the next. Each command must exit with status 0 and, when it names an
output with -o, leave that output behind. Also checked: the README has runnable examples for every
command the binary lists in --help, except those that need a trained model (`predict`, `train`,
`import`), which the README shows as `bash` blocks.
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys


def blocks(text):
    """(info string, [commands]) for every fenced block."""
    out = []
    for m in re.finditer(r"^```([^\n]*)\n(.*?)^```", text, flags=re.S | re.M):
        cmds, pending = [], ""
        for line in m.group(2).splitlines():
            line = pending + line
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            if line.strip() and not line.lstrip().startswith("#"):
                cmds.append(line.strip())
        out.append((m.group(1).strip(), cmds))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--umamba", required=True)
    ap.add_argument("--readme", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()

    runnable = [c for info, cmds in blocks(open(a.readme).read()) if info == "sh" for c in cmds]
    assert runnable, "no runnable (sh) examples in the README"

    shutil.rmtree(a.work, ignore_errors=True)
    bindir = os.path.join(a.work, "bin")
    os.makedirs(bindir)
    os.symlink(os.path.abspath(a.umamba), os.path.join(bindir, "umamba"))
    os.symlink(os.path.join(os.path.abspath(a.source), "examples"),
               os.path.join(a.work, "examples"))
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))

    seen_commands = set()
    for cmd in runnable:
        argv = shlex.split(cmd)
        assert argv[0] == "umamba", f"runnable example does not start with umamba: {cmd}"
        if len(argv) > 1:
            seen_commands.add(argv[1])
        p = subprocess.run(cmd, shell=True, cwd=a.work, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            print(p.stdout[-4000:], p.stderr[-4000:])
            raise SystemExit(f"README example failed with status {p.returncode}: {cmd}")
        for flag in ("-o", "--output"):
            if flag in argv:
                target = os.path.join(a.work, argv[argv.index(flag) + 1])
                assert os.path.exists(target), f"{cmd}: no output at {target}"
        print(f"ok: {cmd}")

    helptext = subprocess.run([a.umamba, "--help"], capture_output=True, text=True).stdout
    listed = set(re.findall(r"^  ([a-z][a-z-]*) {2,}", helptext.split("Subcommands:")[-1], re.M))
    missing = listed - seen_commands - {"predict", "train", "import"}
    assert not missing, f"commands without a runnable README example: {sorted(missing)}"
    print(f"{len(runnable)} README examples ran; commands covered: {sorted(seen_commands)}")


if __name__ == "__main__":
    sys.exit(main())
