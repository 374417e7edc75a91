"""Configuration and the command line: outputs of `run` and `demo`, and bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from attnflow.dynamics.problem import config
from attnflow.dynamics.cli import main
from attnflow.dynamics.errors import AttnflowError


def test_empty_config_has_every_default():
    cfg = config.loads("")
    assert cfg.features.K == 4 and cfg.task.kind == "single-index" and cfg.training.method == "auto"
    assert cfg.resolved()["prompt"]["N"] == "inf"


def test_overrides_and_resolved_echo():
    cfg = config.loads("[task]\nL = 2.0\n").with_overrides({"task.link": "tanh", "features.K": 3})
    assert cfg.task.L == 2.0 and cfg.task.link == "tanh" and cfg.features.K == 3
    assert cfg.raw == {"task": {"L": 2.0, "link": "tanh"}, "features": {"K": 3}}


BAD_CONFIGS = [
    ("[feature]\nK = 3\n", "feature: unknown section"),
    ("[features]\nk = 3\n", "features.k: unknown key"),
    ("[features]\nK = 1\n", "features.K: expected an integer ≥ 2, got 1"),
    ("[features]\nK = \"four\"\n", "features.K: expected an integer, got 'four'"),
    ("[task]\nL = -1\n", "task.L: expected a number > 0, got -1"),
    ("[task]\nlink = \"cos\"\n", "task.link: expected one of"),
    ("[training]\nmethod = \"Euler\"\n", "training.method: expected one of"),
    ("[training]\neps = [0.1, 2.0]\n", "training.eps[1]: expected a number < 1"),
    ("[training]\nrtol = nan\n", "training.rtol: expected a finite number"),
    ("[prompt]\np = [0.5, 0.5]\n", "prompt.p: expected K = 4 probabilities, got 2"),
    ("[prompt]\np = [0.5, 0.2, 0.2, 0.2]\n", "prompt.p: probabilities must sum to 1"),
    ("[prompt]\nN = 0\n", "prompt.N: expected an integer ≥ 1, got 0"),
    ("[prompt]\nN = 2.5\n", "prompt.N: expected an integer, got 2.5"),
    ("[features]\nkind = \"explicit\"\n", "features.matrix: required"),
    ("[features]\nkind = \"explicit\"\nmatrix = [[1, 0], [1, 0]]\n", "features.matrix: rows 0 and 1 are the same"),
    ("[features]\nkind = \"explicit\"\nmatrix = [[1, 0], [1]]\n", "features.matrix: row 1 has 1 entries"),
    ("[features]\nkind = \"orthonormal\"\nK = 4\nd = 2\n", "features.d: orthonormal features need d ≥ K"),
    ("[task]\nkind = \"linear\"\nsigma = 1\nL = 2\n", "task.L: give sigma or L"),
    ("[task]\nkind = \"linear\"\nlink = \"sin\"\nF = [[1]]\n", "task.F: is not used by task.kind = \"linear\""),
    ("[task]\nkind = \"moments\"\nF = [[1, 2], [2, 1]]\n", "task.F: expected a 4×4 matrix"),
    ("[features]\nK = 2\n[task]\nkind = \"moments\"\nF = [[1, 2], [2, 1]]\n", "task.F: must be positive semi-definite"),
    ("[task]\nkind = \"finite\"\nfunctions = [[1, 2, 3]]\n", "task.functions: each function needs K = 4 values"),
    ("[task]\nlink = \"tanh\"\nmoment_method = \"exact\"\n", "task.moment_method: no closed form"),
    ("K = 3\n", "K: unknown section"),
    ("[features\n", "not valid TOML"),
]


@pytest.mark.parametrize("text,message", BAD_CONFIGS)
def test_bad_input_gives_one_clear_line_and_status_2(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ")
    assert message in err


def test_missing_file_and_bad_override(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml"), "--out", str(tmp_path)]) == 2
    assert "cannot read the config file" in capsys.readouterr().err
    (tmp_path / "c.toml").write_text("")
    assert main(["run", str(tmp_path / "c.toml"), "--out", str(tmp_path), "--set", "L=3"]) == 2
    assert "--set: expected SECTION.KEY=VALUE" in capsys.readouterr().err


def test_diverging_step_size_is_one_clear_error(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[features]\nkind = "random-unit"\nK = 4\nd = 3\nseed = 1\n'
                   '[task]\nL = 2.0\n[prompt]\np = [0.4, 0.3, 0.2, 0.1]\n'
                   '[training]\nmode = "gd"\neta = 1e5\nsteps = 200\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--no-plots"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: training.eta: 100000 does not converge") and "stable step" in err
    assert err.count("\n") == 0
    assert (tmp_path / "out" / "summary.json").exists()     # the failed run is still written


def test_run_writes_the_contract_outputs(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[features]\nkind = "simplex"\nK = 3\nd = 2\n[training]\nmode = "both"\nsteps = 2000\n'
                   't_end = 1e4\neps = [0.1, 0.01]\nn_out = 50\n')
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "task.L=2.5"]) == 0
    assert "sharp" in capsys.readouterr().out
    data = np.load(out / "trajectory.npz")
    T = len(data["t"])
    assert data["S"].shape == (T, 3, 3) and data["attention"].shape == (T, 3, 3) and data["loss"].shape == (T,)
    np.testing.assert_allclose(data["attention"].sum(axis=1), 1.0, atol=1e-14)
    gd = np.load(out / "trajectory_gd.npz")
    assert gd["iteration"][-1] == 2000
    summary = json.loads((out / "summary.json").read_text())
    for key in ("versions", "config", "L", "Delta", "delta", "L_Delta_delta", "regime", "compile_time_s",
                "wall_time_s"):
        assert key in summary
    assert summary["config"]["task"]["L"] == 2.5 and summary["regime"] == "sharp"
    for kind in ("flow", "gd"):
        s = summary[kind]
        assert set(s["t_attention_eps"]) == {"0.1", "0.01"} and s["t_half"] > 0
        assert np.allclose(np.sum(s["final_attention"], axis=0), 1.0)
    assert {"nfev", "njev", "nsteps"} <= set(summary["flow"]["counters"])
    assert summary["gd"]["eta_source"].startswith("auto")
    assert (out / "loss.png").stat().st_size > 10_000 and (out / "attention.png").stat().st_size > 10_000


@pytest.mark.slow
def test_console_script_demo_end_to_end(tmp_path):
    """`python -m dynamics.cli demo` as a user runs it: report on stdout, files on disk, status 0."""
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "attnflow", "demo", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "flat (L = 0.3)" in proc.stdout and "sharp (L = 3)" in proc.stdout
    for name in ("demo.png", "report.md", "flat.toml", "sharp.toml", "flat/summary.json", "sharp/trajectory.npz"):
        assert (out / name).exists(), name
    flat = json.loads((out / "flat" / "summary.json").read_text())
    sharp = json.loads((out / "sharp" / "summary.json").read_text())
    assert flat["regime"] == "flat" and sharp["regime"] == "sharp"
    assert flat["gd"]["eta"] == sharp["gd"]["eta"]
    # The written configs reproduce the runs.
    assert config.load(out / "flat.toml").task.L == 0.3


def test_error_carries_the_field():
    with pytest.raises(AttnflowError) as info:
        config.loads("[training]\nsteps = 0\n")
    assert info.value.field == "training.steps"


def test_ci_runs_the_readme_test_command():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    blocks = [b.split("```")[0].strip() for b in readme.split("```bash\n")[1:3]]
    assert blocks[0].endswith("attnflow demo")
    assert blocks[1] in (root / ".ci" / "run").read_text()


def test_summary_is_strict_json_even_with_infinite_values(tmp_path):
    """A stable step of inf (no curvature) or a never-reached crossing must still give valid JSON."""
    from attnflow.dynamics.files import dump_json
    dump_json(tmp_path / "x.json", {"a": float("inf"), "b": [np.float64("nan"), np.int64(3)], "c": np.eye(2)})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "b": [None, 3], "c": [[1.0, 0.0], [0.0, 1.0]]}


def test_run_with_a_finite_prompt_and_the_query_in_the_softmax(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[features]\nkind = "simplex"\nK = 3\nd = 2\n[prompt]\nN = 8\ninclude_query = true\n'
                   '[training]\nt_end = 1e3\nn_out = 20\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["problem"]["query_in_softmax"] and summary["flow"]["status"] == "finished"
    assert summary["finite_prompt"]["quadrature_error_at_end"] < 1e-12
    np.testing.assert_allclose(summary["finite_prompt"]["missing_query_probability"], (2 / 3) ** 8)
    approach = summary["finite_prompt"]["approach_to_large_prompt_limit"]
    assert approach["at_start"]["N"] == [8, 16, 32, 64] and approach["at_start"]["exponent"] == pytest.approx(-1, abs=0.15)
    attention = np.load(tmp_path / "a" / "trajectory.npz")["attention"]
    assert np.all(attention.sum(axis=1) < 1)                 # the query token keeps a share
    assert main(["run", str(cfg), "--out", str(tmp_path / "b"), "--quiet", "--set", "prompt.N=inf"]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert not summary["problem"]["query_in_softmax"] and "no effect at N = inf" in summary["notes"][0]


def test_run_with_separate_key_and_query_matrices(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[features]\nkind = "simplex"\nK = 3\nd = 2\n[model]\nparametrization = "separate"\n'
                   'head_dim = 3\ninit_scale = 0.5\n[training]\nmode = "both"\nsteps = 3000\nt_end = 1e4\nn_out = 30\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["problem"]["parametrization"] == "separate" and summary["problem"]["head_dim"] == 3
    for kind in ("flow", "gd"):
        assert summary[kind]["status"] == "finished" and summary[kind]["final_loss"] < summary["problem"]["initial_loss"]
    data = np.load(tmp_path / "a" / "trajectory.npz")
    B, C = data["factors"][-1].reshape(2, 3, 3)
    np.testing.assert_allclose(B.T @ C, data["S"][-1], atol=1e-12)
    (tmp_path / "z.toml").write_text('[model]\nparametrization = "separate"\n')
    assert main(["run", str(tmp_path / "z.toml"), "--out", str(tmp_path / "b"), "--quiet"]) == 2
    assert "model.init_scale: the separate parametrization needs a random start" in capsys.readouterr().err


def test_run_with_token_noise_reports_the_distance_from_the_noise_free_model(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[features]\nkind = "simplex"\nK = 3\nd = 2\n[task]\nkind = "linear"\n[prompt]\nnoise = 0.2\n'
                   '[training]\nmode = "both"\nsteps = 300\nt_end = 300\nn_out = 20\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    noise = json.loads((tmp_path / "a" / "summary.json").read_text())["noise"]
    assert noise["query_noise_rule"].startswith("Gauss–Hermite") and noise["quadrature_error_at_end"] < 1e-10
    for kind in ("flow", "gd"):
        free = noise["noise_free_reduced"][kind]
        assert 1e-4 < free["max_score_difference_at_end"] < 10 and free["max_attention_difference_at_end"] > 0
    data = np.load(tmp_path / "a" / "trajectory.npz")
    V = np.array([[1.0, 0.0], [-0.5, 3**0.5 / 2], [-0.5, -(3**0.5) / 2]])
    np.testing.assert_allclose(V @ data["Q"][-1].reshape(2, 2) @ V.T, data["S"][-1], atol=1e-12)
    (tmp_path / "z.toml").write_text('[prompt]\nnoise = 0.1\nN = 16\n[task]\nkind = "frequency"\n')
    assert main(["run", str(tmp_path / "z.toml"), "--out", str(tmp_path / "b"), "--quiet"]) == 2
    assert ('prompt.noise: token noise is supported with task.kind = "linear", prompt.N = "inf" only'
            in capsys.readouterr().err)
