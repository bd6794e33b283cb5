"""The machine line names the CPU instructions that decide INT8 and BF16 speed, present or missing."""

from __future__ import annotations

import pytest

from rtdetr_deploy.bench.device import precision_isa
from rtdetr_deploy.bench.report import device_line


@pytest.mark.parametrize(
    ("simd", "expected"),
    [
        (["avx2", "fma"], "AVX2, no VNNI, no BF16"),
        (["avx2", "avx512f", "avx512_vnni"], "AVX2, AVX-512 VNNI, no BF16"),
        (["avx2", "avx_vnni"], "AVX2, AVX-VNNI, no BF16"),
        (
            ["avx2", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"],
            "AVX2, AVX-512 VNNI, AVX512_BF16, AMX",
        ),
        ([], "no AVX2, no VNNI, no BF16"),
    ],
)
def test_precision_isa_names_present_and_missing_instructions(simd, expected):
    assert precision_isa(simd) == expected


def test_two_cpus_of_one_name_read_apart():
    def device(simd: list[str]) -> dict:
        return {"cpu": {"model": "AMD EPYC", "physical_cores": 2, "simd": simd, "virtual_machine": True}}

    avx2 = device_line(device(["avx2"]))
    vnni = device_line(device(["avx2", "avx512f", "avx512_vnni"]))
    assert avx2 == "AMD EPYC (2 cores, AVX2, no VNNI, no BF16, VM)"
    assert vnni == "AMD EPYC (2 cores, AVX2, AVX-512 VNNI, no BF16, VM)"
