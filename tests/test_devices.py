"""Training on several devices: DDP with two CPU processes (Lightning's gloo backend).

The same code path trains on several GPUs (NCCL). Lightning's DDP launcher starts the
other process by running the script again, so the tools run in a script in a subprocess;
rank 0 writes what it measured to a JSON file.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import scneural as sn
from conftest import assert_unchanged, snapshot
from scneural.models._base import (
    OneThreadPerForkedProcess,
    distributed_trainer_kwargs,
    several_devices,
)

TESTS_DIR = Path(__file__).parent

SCRIPT = """
import json, os, sys
sys.path.insert(0, {tests_dir!r})
import numpy as np
import scanpy as sc
import torch
import scneural as sn
from conftest import FAST_EXPRESSION_BACKBONE, synthetic_section

def main(out):
    two = dict(accelerator="cpu", devices=2, enable_progress_bar=False)
    results = {{}}

    counts = sn.datasets.synthetic_counts(n_obs=400, n_vars=100, n_groups=3, seed=0)
    ref = counts.copy()
    sc.pp.normalize_total(ref)
    sc.pp.log1p(ref)
    sn.tl.classify(ref, "group", max_epochs=5, **two)
    results["world_size"] = torch.distributed.get_world_size()
    results["classify"] = {{
        "accuracy": sn.metrics.accuracy(ref.obs["group"], ref.obs["classify_label"]),
        # the history is logged by rank 0 only (Lightning's loggers), empty on rank 1
        "epochs": len(ref.uns["classify"]["history"].get("train_loss", [])),
    }}

    # 258 training cells: 129 per process, 128 + 1 in minibatches of 128 (batch norm
    # cannot train on the lone cell; on one process the last minibatch holds 2)
    odd = sn.datasets.synthetic_counts(n_obs=271, n_vars=30, n_groups=3, seed=1)
    sn.tl.classify(odd, "group", layer="counts", n_hidden=(16,), max_epochs=2, **two)
    results["classify_share_of_128_plus_1"] = len(
        odd.uns["classify"]["history"].get("train_loss", [])
    )

    sn.tl.deep_cluster(
        counts, n_clusters=3, pretrain_epochs=30, max_epochs=10, batch_size=64, **two
    )
    cluster = counts.uns["deep_cluster"]
    results["deep_cluster"] = {{
        "ari": sn.metrics.adjusted_rand_index(counts.obs["group"], counts.obs["deep_cluster"]),
        "soft": list(counts.obsm["deep_cluster_soft"].shape),
        # the target is updated once an epoch: every 4 steps (7 minibatches, 4 a process)
        "updates": len(cluster["label_change"]),
        "epochs": len(cluster["history"]["cluster"].get("train_loss", [])),
    }}

    data = sn.datasets.synthetic_perturbation(seed=0)
    sc.pp.normalize_total(data)
    sc.pp.log1p(data)
    held_out = (data.obs["cell_type"] == "t1") & (data.obs["condition"] == "stimulated")
    train = data[~held_out].copy()
    predicted = sn.tl.perturb(
        train, condition_key="condition", control="control", perturbed="stimulated",
        cell_type_key="cell_type", predict="t1", max_epochs=20, **two,
    )
    control = data[(data.obs["cell_type"] == "t1") & (data.obs["condition"] == "control")]
    results["perturb"] = {{
        "shape": list(predicted.shape),
        "r2": sn.metrics.r2_mean(data[held_out], predicted),
        "r2_control": sn.metrics.r2_mean(data[held_out], control),
    }}

    section = synthetic_section()
    kwargs = {{**FAST_EXPRESSION_BACKBONE, "max_epochs": 2, **two}}
    sn.tl.image_features(section, **kwargs)
    results["image_features"] = {{
        "pca": list(section.obsm["X_image_features_pca"].shape), "spots": section.n_obs,
    }}

    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        with open(out, "w") as handle:
            json.dump(results, handle)

if __name__ == "__main__":
    main(sys.argv[1])
"""


def run_script(
    folder: Path, script: str, timeout: int = 600, env: dict[str, str] | None = None
) -> dict:
    """Run ``script`` (rank 0 writes its results as JSON to ``sys.argv[1]``) in a
    subprocess in ``folder``, with ``env`` added to the environment; return the results.

    The script runs in a session of its own, and a script that runs past ``timeout`` (or
    whose test is interrupted) is killed with every process it started: the DDP
    launcher's other ranks and the processes ``ddp_fork`` forks would otherwise outlive a
    hung test and keep computing on the cores the rest of the suite runs on.
    """
    path = folder / "train_on_two_devices.py"
    path.write_text(textwrap.dedent(script))
    out = folder / "results.json"
    run = subprocess.Popen(
        [sys.executable, str(path), str(out)],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    timed_out = False
    try:
        _, stderr = run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:  # also on an interrupted test, and for a rank left behind by one that ended
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
    if timed_out:
        _, stderr = run.communicate()  # the pipes close once every process is gone
        pytest.fail(f"{path.name} ran past {timeout} s and was killed; stderr:\n{stderr[-5000:]}")
    assert run.returncode == 0, stderr[-5000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory) -> dict:
    """Every torch tool trained on two CPU processes, in one DDP launch."""
    folder = tmp_path_factory.mktemp("ddp")
    return run_script(folder, SCRIPT.format(tests_dir=str(TESTS_DIR)))


def test_tools_train_on_two_processes(two_process_results):
    results = two_process_results
    assert results["world_size"] == 2
    assert results["classify"]["accuracy"] > 0.9
    assert results["classify"]["epochs"] == 5  # early stopping is off under DDP
    assert results["classify_share_of_128_plus_1"] == 2
    assert results["deep_cluster"]["ari"] > 0.8
    assert results["deep_cluster"]["soft"] == [400, 3]
    # update_interval=None is one epoch of a process (not 7 steps, an epoch of all cells)
    assert results["deep_cluster"]["updates"] - results["deep_cluster"]["epochs"] in (0, 1)
    perturb = results["perturb"]
    assert perturb["shape"][1] == 200
    assert perturb["r2"] > perturb["r2_control"]
    assert results["image_features"]["pca"] == [results["image_features"]["spots"], 4]


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        (2, True),
        (np.int64(2), True),
        (-1, True),
        ([0, 1], True),
        ("0,1", True),
        ("2", True),
        (1, False),
        ([0], False),
        ("1", False),
        ("auto", False),
        (True, False),
    ],
)
def test_several_devices(devices, expected):
    assert several_devices(devices) is expected


def _without_callbacks(kwargs: dict) -> dict:
    callbacks = kwargs.pop("callbacks")
    # first, before any callback whose setup computes (the EMA callback copies the weights)
    assert [type(callback) for callback in callbacks][:1] == [OneThreadPerForkedProcess]
    return kwargs


def test_ddp_strategy_is_named_for_several_devices():
    named = _without_callbacks(distributed_trainer_kwargs({"devices": 2}))
    assert named == {"devices": 2, "strategy": "ddp", "inference_mode": False}
    unused = distributed_trainer_kwargs({"devices": 2}, find_unused_parameters=True)
    assert unused["strategy"] == "ddp_find_unused_parameters_true"
    # one device, or a strategy the caller chose, stay as they are
    assert "strategy" not in distributed_trainer_kwargs({"devices": 1})
    mine = {"devices": 2, "strategy": "ddp_spawn", "inference_mode": True}
    assert _without_callbacks(distributed_trainer_kwargs(mine)) == mine
    # the caller's callbacks are kept
    given = distributed_trainer_kwargs({"devices": 2, "callbacks": [mine]})["callbacks"]
    assert given[1] is mine and len(given) == 2
    assert "callbacks" not in distributed_trainer_kwargs({"devices": 1})
    # a DDP strategy the caller named still finds unused parameters where needed
    for strategy in ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook"):
        named = distributed_trainer_kwargs(
            {"devices": 2, "strategy": strategy}, find_unused_parameters=True
        )
        assert named["strategy"] == f"{strategy}_find_unused_parameters_true"
    mine = {"devices": 2, "strategy": "ddp_find_unused_parameters_false"}
    named = _without_callbacks(distributed_trainer_kwargs(mine, find_unused_parameters=True))
    assert named == {
        **mine,
        "inference_mode": False,
    }


@pytest.mark.parametrize("tool", ["classify", "deep_cluster"])
def test_jax_refuses_several_devices(tool):
    pytest.importorskip("jax")
    adata = sn.datasets.synthetic_counts(n_obs=60, n_vars=30, seed=0)
    before = snapshot(adata)
    call = {
        "classify": lambda: sn.tl.classify(
            adata, "group", backend="jax", devices=2, layer="counts"
        ),
        "deep_cluster": lambda: sn.tl.deep_cluster(
            adata, n_clusters=3, backend="jax", devices=2, pretrain_epochs=1
        ),
    }[tool]
    with pytest.raises(ValueError, match=r'devices=2, but backend="jax" trains on one device'):
        call()
    assert_unchanged(adata, before)


#: threads per process that OpenMP cannot start again in a forked child (see the callback)
FORKED_THREADS = {"OMP_NUM_THREADS": "2"}

FORKED_DEEP_CLUSTER = """
import json, sys
import torch
import scneural as sn
from scneural.models.deep_cluster._plan import DECScheduleMixin

def main(out, rank_zero_converges=False):
    torch.log1p(torch.rand(1_000_000)).sum()  # as in a notebook: OpenMP threads used before
    if rank_zero_converges:  # the processes disagree (as q may on GPUs): all must stop
        update = DECScheduleMixin._update_target
        def _update_target(self):
            update(self)
            return self.global_rank == 0 and len(self.label_change) > 1
        DECScheduleMixin._update_target = _update_target
    adata = sn.datasets.synthetic_counts(n_obs=120, n_vars=20, n_groups=3, seed=0)
    sn.tl.deep_cluster(
        adata, n_clusters=3, n_top_genes=None, n_hidden=(16, 8), n_latent=4,
        pretrain_epochs=2, max_epochs=3, batch_size=32, accelerator="cpu", devices=2,
        strategy={strategy!r}, enable_progress_bar=False,
    )
    with open(out, "w") as handle:
        json.dump({{"label_change": adata.uns["deep_cluster"]["label_change"].tolist()}}, handle)

if __name__ == "__main__":
    main(sys.argv[1], {rank_zero_converges!r})
"""


def test_deep_cluster_forked_keeps_its_schedule(tmp_path):
    """``ddp_fork`` (Lightning's choice in a notebook) trains in forked processes; the DEC
    schedule (labels changed at each target update) comes back with rank 0's weights."""
    # the pretraining leaves the cluster centres unused: ddp_fork is made to find them
    script = FORKED_DEEP_CLUSTER.format(strategy="ddp_fork", rank_zero_converges=False)
    # two threads per process, as Lightning gives on 4 cores: forked, they must not hang
    results = run_script(tmp_path, script, timeout=180, env=FORKED_THREADS)
    assert len(results["label_change"]) >= 2


def test_deep_cluster_processes_stop_together(tmp_path):
    """Where one process finds the labels converged, all stop (no hang)."""
    script = FORKED_DEEP_CLUSTER.format(strategy="ddp_fork", rank_zero_converges=True)
    results = run_script(tmp_path, script, timeout=180, env=FORKED_THREADS)
    assert len(results["label_change"]) == 2


FORKED_TOOLS = """
import json, sys
import numpy as np
import scanpy as sc
import torch
import scneural as sn

torch.log1p(torch.rand(1_000_000)).sum()  # as in a notebook: OpenMP threads used before
adata = sn.datasets.synthetic_counts(n_obs=200, n_vars=30, n_groups=2, seed=0)
adata.obs["condition"] = np.where(np.arange(adata.n_obs) % 2, "stim", "ctrl")
sc.pp.normalize_total(adata)
sc.pp.log1p(adata)
forked = dict(max_epochs=2, accelerator="cpu", devices=2, strategy="ddp_fork",
              enable_progress_bar=False)
sn.tl.classify(adata, "group", **forked)
# scGen's weight averaging (EMA) copies the weights in its callback's setup
pred = sn.tl.perturb(adata, condition_key="condition", control="ctrl", perturbed="stim",
                     cell_type_key="group", predict="g0", **forked)
with open(sys.argv[1], "w") as handle:
    json.dump({"labels": int(adata.obs["classify_label"].notna().sum()),
               "predicted": pred.n_obs}, handle)
"""


def test_forked_tools_with_several_threads_do_not_hang(tmp_path):
    """classify and perturb (whose EMA callback computes in its setup) train in forked
    processes that were given two threads each."""
    results = run_script(tmp_path, FORKED_TOOLS, timeout=180, env=FORKED_THREADS)
    assert results["labels"] == 200
    assert results["predicted"] > 0


HUNG_WITH_A_CHILD = """
import os, sys, time
child = os.fork()
if child == 0:
    time.sleep(600)  # a forked rank that hangs
    os._exit(0)
with open(sys.argv[1] + ".child", "w") as handle:
    handle.write(str(child))
time.sleep(600)  # rank 0 hangs too
"""


def is_running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_run_script_kills_every_process_of_a_hung_script(tmp_path):
    """A hung script is killed with the processes it forked, which would otherwise keep
    running (on the suite's cores) after the test failed."""
    with pytest.raises(pytest.fail.Exception, match="ran past 3 s"):
        run_script(tmp_path, HUNG_WITH_A_CHILD, timeout=3)
    child = int((tmp_path / "results.json.child").read_text())
    for _ in range(50):  # SIGKILL is delivered asynchronously
        if not is_running(child):
            break
        time.sleep(0.1)
    assert not is_running(child)


def test_deep_cluster_plans_pickle_for_ddp_spawn(monkeypatch):
    """``strategy="ddp_spawn"`` pickles the training plans into the processes it starts."""
    from scneural.models.deep_cluster import _model

    pickled = []

    class PicklingRunner:
        def __init__(self, model, training_plan, **kwargs):
            pickled.append(type(pickle.loads(pickle.dumps(training_plan))).__name__)

        def __call__(self):
            pass

    adata = sn.datasets.synthetic_counts(n_obs=60, n_vars=20, seed=0)
    sn.models.DeepCluster.setup_anndata(adata, layer="counts")
    model = sn.models.DeepCluster(adata, n_clusters=3, n_hidden=(8,), n_latent=2)
    model.pretrain(1, enable_progress_bar=False)  # trains: k-means needs a latent space
    monkeypatch.setattr(_model, "TrainRunner", PicklingRunner)
    model.pretrain(1)
    model.init_clusters(n_init=1)
    model.train_clusters(1)
    assert pickled == ["TrainingPlan", "DECTrainingPlan"]
