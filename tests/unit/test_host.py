"""Host info: platform ids from vast.ai / SaladCloud environment variables, CPU model parsing,
and the whole record on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import emp
from emp.agent.host import cpu_model_from_cpuinfo, detect_platform, host_info

VAST = {
    "CONTAINER_ID": "12345678",
    "VAST_CONTAINERLABEL": "C.12345678",
    "PUBLIC_IPADDR": "203.0.113.7",
    "GPU_COUNT": "2",
    "VAST_TCP_PORT_22": "40022",
    "VAST_TCP_PORT_9090": "40090",
    "VAST_UDP_PORT_5000": "45000",
    "CONTAINER_API_KEY": "secret-must-not-be-reported",
    "PATH": "/usr/bin",
}
SALAD = {
    "SALAD_MACHINE_ID": "m-1",
    "SALAD_INSTANCE_ID": "i-2",
    "SALAD_CONTAINER_GROUP_ID": "g-3",
    "SALAD_CONTAINER_GROUP_NAME": "comfy-workers",
    "SALAD_PROJECT_ID": "p-4",
    "SALAD_PROJECT_NAME": "emp",
    "SALAD_ORGANIZATION_ID": "o-5",
    "SALAD_ORGANIZATION_NAME": "acme",
    "HOSTNAME": "i-2",
}


def test_vast() -> None:
    name, ids = detect_platform(VAST)
    assert name == "vast"
    assert ids == {
        "CONTAINER_ID": "12345678",
        "VAST_CONTAINERLABEL": "C.12345678",
        "PUBLIC_IPADDR": "203.0.113.7",
        "GPU_COUNT": "2",
        "VAST_TCP_PORT_22": "40022",
        "VAST_TCP_PORT_9090": "40090",
        "VAST_UDP_PORT_5000": "45000",
    }


def test_vast_by_label_alone() -> None:
    assert detect_platform({"VAST_CONTAINERLABEL": "C.1"}) == ("vast", {"VAST_CONTAINERLABEL": "C.1"})


def test_salad() -> None:
    name, ids = detect_platform(SALAD)
    assert name == "salad"
    assert ids == {k: v for k, v in SALAD.items() if k.startswith("SALAD_")}


def test_salad_wins_over_a_generic_container_id() -> None:
    name, ids = detect_platform({**SALAD, "CONTAINER_ID": "abc"})
    assert name == "salad"
    assert "CONTAINER_ID" not in ids


def test_other_and_empty_values() -> None:
    assert detect_platform({}) == ("other", {})
    assert detect_platform({"CONTAINER_ID": "", "SALAD_MACHINE_ID": "  ", "PATH": "/bin"}) == ("other", {})


def test_cpu_model_from_cpuinfo() -> None:
    x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n"
    assert cpu_model_from_cpuinfo(x86) == "AMD EPYC 7B13 64-Core Processor"
    arm = "processor\t: 0\nBogoMIPS\t: 108.00\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
    assert cpu_model_from_cpuinfo(arm) == "Raspberry Pi 4 Model B Rev 1.4"
    assert cpu_model_from_cpuinfo("processor\t: 0\n") is None


def test_host_info_on_this_machine(tmp_path: Path) -> None:
    info = host_info(environ=VAST, disk_path=tmp_path)
    json.dumps(info)  # JSON-ready as it is
    assert info["hostname"]
    assert info["emp_version"] == emp.__version__
    assert info["python"].count(".") == 2
    assert info["cpu_cores"] >= 1
    assert info["cpu_cores"] <= info["cpu_cores_total"]
    assert 0 < info["ram_available_gb"] <= info["ram_total_gb"]
    assert 0 < info["disk_free_gb"] <= info["disk_total_gb"]
    assert info["platform"] == "vast"
    assert info["platform_ids"]["CONTAINER_ID"] == "12345678"
    assert "secret-must-not-be-reported" not in json.dumps(info)


def test_host_info_with_a_missing_disk_path(tmp_path: Path) -> None:
    info = host_info(environ={}, disk_path=tmp_path / "nope")
    assert (info["disk_total_gb"], info["disk_free_gb"]) == (None, None)
    assert (info["platform"], info["platform_ids"]) == ("other", {})
