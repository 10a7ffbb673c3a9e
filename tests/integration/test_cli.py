"""Every program we ship reads its command line the same way (issue 14 "Command line"):
getopt_long, so --opt=value works; --version prints the meson project version; a bad option
or argument is named in the error (exit 2). Programs: stopgated, stopctl, stopbench,
stopgate-bank-consumer (paths from $STOPGATED, $STOPCTL, $STOPBENCH, $BANK_CONSUMER)."""
import os
import re
import subprocess
import unittest

import sgtest

PROGRAMS = {
    "stopgated": sgtest.STOPGATED,
    "stopctl": sgtest.STOPCTL,
    "stopbench": os.environ.get("STOPBENCH") or os.path.join(sgtest.ROOT, "build", "bench", "stopbench"),
    "stopgate-bank-consumer": os.environ.get("BANK_CONSUMER") or
    os.path.join(sgtest.ROOT, "build", "ops", "stopgate-bank-consumer"),
}


def project_version():
    with open(os.path.join(sgtest.ROOT, "meson.build"), encoding="utf-8") as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


def run(*argv, env=None):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, env=env)


class Cli(unittest.TestCase):
    def test_version_everywhere(self):
        v = project_version()
        for name, path in PROGRAMS.items():
            p = run(path, "--version")
            self.assertEqual(p.returncode, 0, "%s --version: %s" % (name, p.stderr))
            self.assertEqual(p.stdout.strip(), "%s (stopgate) %s" % (name, v))

    def test_help_everywhere(self):
        for name, path in PROGRAMS.items():
            p = run(path, "--help")
            self.assertEqual(p.returncode, 0, name)
            self.assertIn("usage:", p.stdout, name)
            self.assertIn("--version", p.stdout, name)

    def test_unknown_option_named(self):
        for name, path in PROGRAMS.items():
            p = run(path, "--no-such-option=3")
            self.assertEqual(p.returncode, 2, "%s: %s" % (name, p.stderr))
            self.assertIn("'--no-such-option", p.stderr, name)

    def test_bad_values_named(self):
        for argv, word in (([PROGRAMS["stopbench"], "--op=check", "--requests=many"], "'many'"),
                           ([PROGRAMS["stopbench"], "--op=frob"], "'frob'"),
                           ([PROGRAMS["stopbench"], "--op", "check", "leftover"], "'leftover'"),
                           ([PROGRAMS["stopgated"], "--check-config", "leftover"], "'leftover'"),
                           ([PROGRAMS["stopgate-bank-consumer"], "--port=notaport", "B"], "'notaport'"),
                           ([PROGRAMS["stopctl"], "--port=notaport", "info"], "'notaport'")):
            p = run(*argv)
            self.assertEqual(p.returncode, 2, argv)
            self.assertIn(word, p.stderr, argv)

    def test_opt_equals_value(self):
        d = sgtest.make_temp_dir("sgtest-cli-")
        conf = os.path.join(d, "bad.conf")
        with open(conf, "w") as f:
            f.write("[gateway]\nno_such_key = 1\n")
        # --config=FILE reads that file (and refuses it, naming it); the spaced form agrees.
        for argv in (["--config=" + conf, "--check-config"], ["-c", conf, "--check-config"]):
            p = run(PROGRAMS["stopgated"], *argv)
            self.assertEqual(p.returncode, 1, p.stdout)
            self.assertIn(conf, p.stderr)
        p = run(PROGRAMS["stopgated"], "--config=" + os.path.join(sgtest.ROOT, "config", "stopgate.conf"),
                "--check-config")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("configuration ok", p.stdout)
        # stopbench: --opt=value up to the connection (nothing listens on that port).
        port = sgtest.free_port()
        p = run(PROGRAMS["stopbench"], "--host=127.0.0.1", "--port=%d" % port, "--op=ping", "--requests=1",
                "--quiet", env=dict(os.environ, STOPGATE_SECRET="x"))
        self.assertEqual(p.returncode, 3, p.stderr)  # cannot connect: the options were taken


if __name__ == "__main__":
    sgtest.main()
