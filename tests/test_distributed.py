"""Real multi-process data-parallel training: torchrun, two CPU processes, gloo."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def torchrun(*args, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def test_two_processes_hold_identical_weights_and_resume_exactly(tmp_path):
    r = torchrun(Path(__file__).with_name("ddp_worker.py"), tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert int(a["world"]) == 2
    # each rank its own shard of the data
    assert set(a["shard"].tolist()).isdisjoint(b["shard"].tolist()) and len(a["shard"]) + len(b["shard"]) == 301
    for k in a:
        if k.startswith("full."):
            assert torch.equal(a[k], b[k]), k
            assert torch.equal(a[k], a[k.replace("full.", "resumed.")]), k  # interrupted + resumed == uninterrupted
        if k.startswith("timed"):
            assert torch.equal(a[k], b[k]), k  # same step budget, same stopping step, same weights
    assert 0 < int(a["timed_step"]) <= int(a["timed_budget"]) < 10**6
    # only rank 0 wrote the run
    assert (tmp_path / "full" / "metrics.jsonl").read_text().count("\n") == 4


def test_cli_training_under_torchrun(tmp_path):
    out = tmp_path / "run"
    r = torchrun("-m", "ddpm.cli", "train", "--data", "moons", "--out", out, "--steps", "30", "--quiet",
                 "--set", "train.log_every=10", "--set", "sample.n=100")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("trained 30 steps") == 1  # rank 0 reports
    assert (out / "model.safetensors").is_file() and (out / "eval.json").is_file()
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3 and '"examples_per_sec"' in rows[0]


LEAVER = """
import sys
import torch.distributed as dist
from ddpm.config import make_config
from ddpm.runs import train

if sys.argv[2] == "caller":
    dist.init_process_group("gloo")
cfg = make_config(data="moons", overrides={"train.steps": 5, "sample.n": 100})
trainer = train(cfg, sys.argv[1], progress=False)
print(f"rank {trainer.dist.rank} in a group after training: {dist.is_initialized()}")
"""


@pytest.mark.parametrize("owner", ["trainer", "caller"])
def test_training_leaves_the_process_group_it_joined_and_only_that(tmp_path, owner):
    """A gloo process that exits still holding its group (through DDP) could abort in the interpreter's
    teardown (SIGABRT) while rank 0 was still evaluating, and torchrun then failed the run: 1 in 7 to
    1 in 12 runs of these tests. The trainer drops DDP and leaves the group it joined; a group the
    caller set up stays the caller's."""
    script = tmp_path / "leaver.py"
    script.write_text(LEAVER)
    r = torchrun(script, tmp_path / "run", owner)
    assert r.returncode == 0, r.stderr[-3000:]
    still = owner == "caller"
    assert sorted(r.stdout.splitlines()) == [f"rank {k} in a group after training: {still}" for k in (0, 1)]


def test_two_nodes_through_a_rendezvous(tmp_path):
    """Multi-node torchrun: two launchers ("nodes", one process each) meet at a c10d rendezvous on
    localhost, exactly as two machines would at a shared address; rank 0 writes the run."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # on one machine both launchers would see themselves as the endpoint's host: name the one that
    # hosts the rendezvous store, as separate machines need not
    cmds = [[sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
             "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "ddpm-two-nodes",
             "--rdzv_conf", f"is_host={host}", "-m", "ddpm.cli", "train", "--data", "moons", "--out", str(out),
             "--steps", "20", "--quiet", "--set", "train.log_every=10", "--set", "sample.n=100"]
            for host in ("true", "false")]
    nodes = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for cmd in cmds]
    try:
        results = [node.communicate(timeout=300) for node in nodes]
    except subprocess.TimeoutExpired:
        for node in nodes:
            node.kill()
        said = [node.communicate()[1][-2000:] for node in nodes]
        pytest.fail(f"the two nodes did not finish in 300 s; their stderr: {said}")
    for node, (_, err) in zip(nodes, results):
        assert node.returncode == 0, err[-3000:]
    assert sum(stdout.count("trained 20 steps") for stdout, _ in results) == 1  # one rank 0 in all
    state = load_file(str(next((out / "checkpoints").glob("step_*")) / "state.safetensors"))
    assert {k.split(".")[0] for k in state if k.startswith("rank")} == {"rank0", "rank1"}  # both ranks' streams
    assert (out / "model.safetensors").is_file()
