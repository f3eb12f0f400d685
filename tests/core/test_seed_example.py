"""The seed's Adapter example, reproduced to the digit by the CLI."""

import subprocess
import sys

SEED_COMMAND = ["train", "--base", "seed-pooled", "--method", "adapter", "--bottleneck", "4",
                "--dataset", "seed-intents", "--steps", "201", "--lr", "0.05", "--seed", "42", "--log-every", "50"]

EXPECTED = """\
total params = 694
trainable params = 182
step=000 loss=0.7183 acc=0.50
step=050 loss=0.0000 acc=1.00
step=100 loss=0.0000 acc=1.00
step=150 loss=0.0000 acc=1.00
step=200 loss=0.0000 acc=1.00
refund my order        -> refund
need a refund          -> refund
cancel and refund      -> refund
login failed again     -> login
cannot login account   -> login
password login problem -> login
"""


def test_seed_command_prints_the_seed_output_line_for_line():
    result = subprocess.run([sys.executable, "-m", "peft_studio", *SEED_COMMAND],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == EXPECTED.splitlines()
