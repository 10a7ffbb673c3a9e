"""Man pages and bash completion (issue 14 item 3): stopctl(1), stopbench(1), stopgate.conf(5),
stopgated(8) and stopgate-bank-consumer(1) as meson configures them render without a warning under `man --warnings` and
`groff -man -ww`, and stay in step with the programs (every stopctl command, every stopbench
and stopgated long option is in its page). The bash completion, sourced in bash, completes
commands, list subcommands and a command's own options."""
import os
import re
import subprocess
import unittest

import sgtest

MAN_DIR = os.environ.get("MAN_BUILD_DIR") or os.path.join(sgtest.ROOT, "build", "docs", "man")
COMPLETION = os.path.join(sgtest.ROOT, "ops", "stopctl.bash-completion")
STOPBENCH = os.environ.get("STOPBENCH") or os.path.join(sgtest.ROOT, "build", "bench", "stopbench")
BANK_CONSUMER = os.environ.get("BANK_CONSUMER") or os.path.join(sgtest.ROOT, "build", "ops", "stopgate-bank-consumer")
PAGES = ["stopctl.1", "stopbench.1", "stopgate-bank-consumer.1", "stopgate.conf.5", "stopgated.8"]


def page(name):
    return os.path.join(MAN_DIR, name)


def text(name):
    """The page as man renders it, hyphens and quotes made plain ASCII."""
    env = dict(os.environ, MANWIDTH="200", LC_ALL="C.UTF-8")
    r = subprocess.run(["man", "-l", page(name)], capture_output=True, text=True, env=env, timeout=60)
    return re.sub(r"[\u2010\u2011\u2212]", "-", r.stdout)


def long_options(help_text):
    return set(re.findall(r"--[a-z][a-z-]+", help_text))


class ManPages(unittest.TestCase):
    def test_render_without_warnings(self):
        env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
        for name in PAGES:
            self.assertTrue(os.path.exists(page(name)), page(name))
            with open(page(name), encoding="utf-8") as f:
                src = f.read()
            self.assertNotIn("@VERSION@", src)
            r = subprocess.run(["man", "--warnings", "-l", page(name)], capture_output=True, text=True, env=env,
                               timeout=60)
            self.assertEqual((r.returncode, r.stderr), (0, ""), name)
            self.assertIn("NAME", r.stdout)
            g = subprocess.run(["groff", "-man", "-ww", "-z", page(name)], capture_output=True, text=True,
                               timeout=60)
            self.assertEqual((g.returncode, g.stderr), (0, ""), name)

    def test_pages_follow_the_programs(self):
        ctl = text("stopctl.1")
        helptext = subprocess.run([sgtest.STOPCTL, "--help"], capture_output=True, text=True).stdout
        commands = re.findall(r"^  ([a-z-]+(?: [a-z]+)?)  ", helptext.split("commands")[1], re.M)
        self.assertGreater(len(commands), 10)
        for cmd in commands:
            self.assertRegex(ctl, r"\n\s+%s\b" % re.escape(cmd), "stopctl.1 lacks the command %r" % cmd)
            sub = subprocess.run([sgtest.STOPCTL] + cmd.split() + ["--help"], capture_output=True, text=True).stdout
            for opt in long_options(sub) - {"--help", "--json"}:
                self.assertIn(opt, ctl, "stopctl.1 lacks %s %s" % (cmd, opt))
        for opt in long_options(helptext):
            self.assertIn(opt, ctl, "stopctl.1 lacks the global option %s" % opt)
        for prog, name in ((STOPBENCH, "stopbench.1"), (sgtest.STOPGATED, "stopgated.8"),
                           (BANK_CONSUMER, "stopgate-bank-consumer.1")):
            man = text(name)
            out = subprocess.run([prog, "--help"], capture_output=True, text=True).stdout
            for opt in long_options(out):
                self.assertIn(opt, man, "%s lacks %s" % (name, opt))
        version = subprocess.run([sgtest.STOPCTL, "--version"], capture_output=True, text=True).stdout.split()[-1]
        self.assertIn("stopgate " + version, text("stopctl.1"))


class Completion(unittest.TestCase):
    def complete(self, *words):
        """COMPREPLY of stopctl's completion for the command line words (the last one is
        being completed)."""
        script = ('source "%s"\nCOMP_WORDS=(%s)\nCOMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n_stopctl\n'
                  'printf "%%s\\n" "${COMPREPLY[@]}"\n') % (COMPLETION, " ".join("'%s'" % w for w in words))
        env = dict(os.environ, PATH=os.path.dirname(sgtest.STOPCTL) + os.pathsep + os.environ.get("PATH", ""))
        r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                           env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return sorted(l for l in r.stdout.splitlines() if l)

    def test_commands(self):
        self.assertEqual(self.complete("stopctl", "st"), ["status", "stop"])
        self.assertIn("journal", self.complete("stopctl", ""))
        self.assertEqual(self.complete("stopctl", "--ag"), ["--agent"])

    def test_subcommands_and_their_options(self):
        self.assertEqual(self.complete("stopctl", "-p", "7379", "list", ""), ["add", "del", "info", "load"])
        self.assertEqual(self.complete("stopctl", "journal", "v"), ["verify"])
        self.assertEqual(self.complete("stopctl", "stop", "--re"), ["--reason", "--request-id"])
        self.assertEqual(self.complete("stopctl", "list", "add", "--sc"), ["--score"])
        self.assertIn("--doc", self.complete("stopctl", "--json", "freeze", "--"))

    def test_paths(self):
        d = sgtest.make_temp_dir("sgtest-comp-")
        os.mkdir(os.path.join(d, "journal-a"))
        self.assertEqual(self.complete("stopctl", "journal", "verify", os.path.join(d, "jour")),
                         [os.path.join(d, "journal-a")])


if __name__ == "__main__":
    sgtest.main()
