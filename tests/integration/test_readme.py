"""README.md's commands work (issue 14 "README"): a gateway on the embedded defaults (no
agents, no lists but `protected`; only its ports and directories are the test's own) and
every command of README's ```sh blocks run in order, stopctl as `build/gateway/stopctl`
pointed at that gateway, each required to exit 0; then the redis-cli session of README, fed
to redis-cli, answered without an error. Not run here: ./ops/quickstart and ./ops/test (the
"Two commands" block), which start their own gateways on the fixed default ports."""
import os
import re
import shlex
import shutil
import subprocess
import unittest

import sgtest
from sgtest import Gateway, wait_until

README = os.path.join(sgtest.ROOT, "README.md")
SECRET = "readme-dev-secret"
NOT_HERE = ("./ops/quickstart", "./ops/test")


def fenced_blocks(text):
    """[(language, [lines])] of the fenced blocks, in order."""
    return [(m.group(1), m.group(2).splitlines()) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)]


class Readme(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # The embedded defaults but for the ports and directories: no agents (so the dev
        # agent), no [list] sections (so only `protected`), the simulated bank.
        cls.gw = sgtest.track(Gateway(agents={}, name="readme", env={"STOPGATE_DEV_SECRET": SECRET}))
        cls.gw.start()
        with open(README, encoding="utf-8") as f:
            cls.blocks = fenced_blocks(f.read())

    @classmethod
    def tearDownClass(cls):
        cls.gw.close()

    def shell(self, line):
        """Run one README line, stopctl aimed at the test gateway; returns the result."""
        ctl = "%s -h %s -p %d" % (shlex.quote(sgtest.STOPCTL), sgtest.HOST, self.gw.port)
        cmd = line.replace("build/gateway/stopctl", ctl)
        env = dict(os.environ, STOPGATE_SECRET=SECRET)
        return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60, env=env,
                              cwd=sgtest.ROOT)

    def test_commands(self):
        ran = 0
        for lang, lines in self.blocks:
            if lang != "sh":
                continue
            for line in lines:
                if not line.strip() or line.lstrip().startswith("#") or line.startswith("export STOPGATE_SECRET"):
                    continue
                if line.startswith(NOT_HERE):
                    continue
                r = self.shell(line)
                self.assertEqual(r.returncode, 0, "README command failed: %s\n%s%s" % (line, r.stdout, r.stderr))
                ran += 1
                for needle, want in (("check ICBC 6222000000001234", "FROZEN"), ("--request-id r-3", "HELD"),
                                     ("list info protected", "entries       3")):
                    if needle in line:
                        self.assertIn(want, r.stdout, line)
                if line.rstrip().endswith("status SG-1"):
                    self.assertRegex(r.stdout, r"accepted_at\s+\d{4}-\d\d-\d\dT")
        self.assertGreaterEqual(ran, 10)

    def test_redis_cli_session(self):
        redis_cli = shutil.which("redis-cli")
        if not redis_cli:
            self.skipTest("redis-cli not found (redis-tools, in ops/lib.sh)")
        session = [l for _, lines in self.blocks for l in lines if l.startswith("127.0.0.1:7379> ")]
        self.assertGreaterEqual(len(session), 5)
        script = "\n".join(l[len("127.0.0.1:7379> "):].replace("<secret>", SECRET) for l in session) + "\n"
        r = subprocess.run([redis_cli, "-h", sgtest.HOST, "-p", str(self.gw.port)], input=script, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        errors = [l for l in r.stdout.splitlines() if re.match(r"^(\(error\) )?(ERR|NOAUTH|NOPERM|WRONGPASS)\b", l)]
        self.assertEqual(errors, [], r.stdout)
        self.assertIn("ACCEPTED", r.stdout)
        self.assertIn("C-42", r.stdout)


if __name__ == "__main__":
    sgtest.main()
