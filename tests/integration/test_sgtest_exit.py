"""The harness's exit status (issue 14 "Tests"): a suite run through sgtest.main() that skips
exits 77 so meson records SKIP (and ops/test counts it), not OK; one that fails exits 1, one
that passes exits 0. Each case is a tiny suite run in a child Python."""
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))

SUITES = {
    "pass": "def test_a(self):\n        pass\n",
    "skip_test": "def test_a(self):\n        pass\n\n    def test_b(self):\n        self.skipTest('no widget')\n",
    "skip_class": "@classmethod\n    def setUpClass(cls):\n        raise unittest.SkipTest('no widget here')\n\n"
                  "    def test_a(self):\n        pass\n",
    "fail": "def test_a(self):\n        self.fail('broken')\n\n    def test_b(self):\n        self.skipTest('no widget')\n",
}


def run_suite(body):
    src = "import unittest\nimport sgtest\n\n\nclass T(unittest.TestCase):\n    %s\n\n" \
          "if __name__ == '__main__':\n    sgtest.main()\n" % body
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(src)
    try:
        env = dict(os.environ, PYTHONPATH=HERE)
        return subprocess.run([sys.executable, f.name], capture_output=True, text=True, timeout=60, env=env)
    finally:
        os.unlink(f.name)


class ExitStatus(unittest.TestCase):
    def test_pass_is_0(self):
        self.assertEqual(run_suite(SUITES["pass"]).returncode, 0)

    def test_skipped_test_is_77(self):
        r = run_suite(SUITES["skip_test"])
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertIn("SKIPPED", r.stderr)
        self.assertIn("no widget", r.stderr)

    def test_skipped_class_is_77(self):
        r = run_suite(SUITES["skip_class"])
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertIn("no widget here", r.stderr)

    def test_failure_wins_over_skip(self):
        self.assertEqual(run_suite(SUITES["fail"]).returncode, 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
