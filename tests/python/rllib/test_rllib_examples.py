"""The RLlib examples run as users run them (``python script.py``: envs and callbacks defined in
``__main__`` travel to the env runners and Tune's trials by value); nothing is left behind."""

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "python"


@pytest.mark.timeout(400)
def test_ppo_cartpole_example(run_script):
    w = run_script((EXAMPLES / "rllib_ppo_cartpole.py").read_text(), args=["--target", "150", "--max-iters", "40"],
                   timeout=380)
    assert w.returncode == 0, w
    assert "rllib example OK" in w.stdout, w
    greedy = [l for l in w.stdout.splitlines() if "greedy episode" in l]
    assert greedy and float(greedy[0].split("return ")[1].split(";")[0]) >= 100, w


@pytest.mark.timeout(300)
def test_custom_env_example(run_script):
    w = run_script((EXAMPLES / "rllib_custom_env.py").read_text(), timeout=280)
    assert w.returncode == 0, w
    assert "custom env example OK" in w.stdout, w


@pytest.mark.timeout(400)
def test_tune_ppo_example(run_script, tmp_path):
    w = run_script((EXAMPLES / "rllib_tune_ppo.py").read_text(), args=[str(tmp_path / "results"), "--iters", "4"],
                   timeout=380)
    assert w.returncode == 0, w
    assert "rllib tune example OK" in w.stdout, w
    assert (tmp_path / "results" / "grid").is_dir() and (tmp_path / "results" / "pbt").is_dir()
