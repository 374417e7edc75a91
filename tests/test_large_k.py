"""K up to 256: every path that would form a dense Jacobian too large for memory is refused
at configuration time, naming the field in one line (exit 2), and the rest runs."""

import pytest

from attnflow.dynamics.problem import config
from attnflow.dynamics.cli import main, parse_override
from attnflow.dynamics.errors import AttnflowError

SEPARATE = ["model.parametrization=\"separate\"", "model.init_scale=0.1"]


def _sets(*pairs):
    return [arg for pair in pairs for arg in ("--set", pair)]


# (overrides, field, words the one line must contain)
REFUSED = [
    (["features.K=256", "training.method=\"Radau\""], "training.method", ["Radau", "34.4 GB", "K = 256",
                                                                         "DOP853-compiled"]),
    (["features.K=128", "training.method=\"LSODA\""], "training.method", ["LSODA", "2.15 GB", "K = 128"]),
    (["features.K=128", "prompt.N=16"], "training.method", ["auto", "Rodas4P2", "2.15 GB"]),  # the default at finite N
    (["features.K=128", "prompt.N=16", "training.method=\"Rodas4P2-compiled\""], "training.method", ["Rodas4P2"]),
    (["features.K=91", "training.method=\"BDF\"", "training.mode=\"both\""], "training.method", ["BDF", "K ≤ 90"]),
    (["features.K=100", "training.mode=\"gd\"", *SEPARATE], "model.head_dim", ["GD", "20000²", "head_dim ≤ 40"]),
    (["features.K=256", "model.head_dim=17", "training.method=\"RK45\"", "training.mode=\"both\"", *SEPARATE],
     "model.head_dim", ["8704²", "head_dim ≤ 16"]),
    (["features.K=8", "features.d=4096", "training.mode=\"gd\"", *SEPARATE], "model.head_dim", ["h = 4096",
                                                                                                "head_dim ≤ 64"]),
    (["features.K=257", "training.method=\"DOP853-compiled\""], "features.K", ["≤ 256"]),
]


@pytest.mark.parametrize("overrides, field, words", REFUSED)
def test_a_dense_jacobian_beyond_memory_is_refused_in_one_line(overrides, field, words, tmp_path, capsys):
    empty = tmp_path / "c.toml"
    empty.write_text("")
    status = main(["run", str(empty), "--out", str(tmp_path / "out"), "--quiet", *_sets(*overrides)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith(f"error: {field}: "), err
    assert all(w in err[0] for w in words), err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("overrides", [
    ["features.K=256", "training.method=\"DOP853-compiled\""],        # explicit methods never form a Jacobian
    ["features.K=256"],                                                # the default, auto: DOP853 at N = ∞
    ["features.K=256", "prompt.N=16", "prompt.include_query=true"],    # auto: DOP853 with the query
    ["features.K=256", "training.mode=\"gd\""],                       # the merged stable step is matrix-free
    ["features.K=90", "training.method=\"LSODA\""],                   # 8100² doubles: within the bound
    ["features.K=256", "model.head_dim=16", "training.mode=\"both\"", "training.method=\"RK45\"", *SEPARATE],
    ["features.K=256", "training.method=\"LSODA\"", "prompt.noise=0.1", "task.kind=\"linear\"", "features.d=8"],
])
def test_large_k_configurations_without_a_large_dense_jacobian_are_accepted(overrides):
    cfg = config.from_dict({}).with_overrides(dict(parse_override(o) for o in overrides))
    assert cfg.features.K == int(overrides[0].split("=")[1])


def test_derive_beyond_k64_is_refused_before_sympy(tmp_path, capsys):
    empty = tmp_path / "c.toml"
    empty.write_text("")
    status = main(["derive", str(empty), "--set", "features.K=65"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("error: features.K: derive"), err


def test_check_beyond_the_dense_bound_is_refused_before_any_flow(tmp_path, capsys):
    """check's reference flows run "auto", Rodas4P2 at finite N without the query: at K = 91 there it
    stops in one line before any work."""
    empty = tmp_path / "c.toml"
    empty.write_text("")
    status = main(["check", str(empty), "--out", str(tmp_path / "out"), "--quiet",
                   *_sets("features.K=91", "prompt.N=16", "training.method=\"DOP853-compiled\"")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("error: features.K: check") and "K = 90" in err[0], err


def test_the_limits_are_what_the_messages_say():
    assert config.MAX_K == 256 and config.MAX_DENSE_JACOBIAN == 8192
    with pytest.raises(AttnflowError, match="K ≤ 90"):
        config.from_dict({"features": {"K": 91}, "training": {"method": "LSODA"}})
    with pytest.raises(AttnflowError, match="K ≤ 90"):
        config.from_dict({"features": {"K": 91}, "prompt": {"N": 16}})
    assert config.from_dict({"features": {"K": 91}}).training.method == "auto"
