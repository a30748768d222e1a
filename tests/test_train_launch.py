"""torchrun command lines from SLURM variables (no processes started)."""

from olmpool.train.launch import first_host, torchrun_command


def test_first_host_parsing():
    assert first_host("gpu[003-005,009],cpu1") == "gpu003"
    assert first_host("node7") == "node7"


def test_multi_node_command_from_slurm():
    env = {"SLURM_JOB_ID": "1234", "SLURM_NNODES": "4", "SLURM_NODEID": "2",
           "SLURM_JOB_NODELIST": "gpu[003-005,009]", "SLURM_GPUS_ON_NODE": "8"}
    cmd = torchrun_command(["pretrain", "--config", "c.yaml"], None, env)
    assert "--nproc_per_node=8" in cmd and "--nnodes=4" in cmd and "--node_rank=2" in cmd
    assert "--master_addr=gpu003" in cmd and "--master_port=21234" in cmd
    assert cmd[-4:] == ["olmpool.cli", "pretrain", "--config", "c.yaml"]


def test_single_node_command_is_standalone():
    cmd = torchrun_command(["extend"], 2, {})
    assert "--standalone" in cmd and "--nproc_per_node=2" in cmd
