"""report/plan.yaml and the lab variants: checked on load; ONLY in a variant's numbering; what a section needs."""

from __future__ import annotations

import pytest
import yaml
from conftest import NOTEBOOKS, REPO

from lablib.report.plan import PlanError, load_plan, parse_duration
from lablib.report.variants import VariantError, load_variants

LAB_NOTEBOOKS = """c1_training c2_timing c3_workers c4_gpu_vs_cpu c5_optimizers c6_no_batchnorm c7_torchscript
c8_graph c9_eval c10_latency q1_conv_layers q2_last_linear q3_params_sgd q4_params_adam q5_trace_vs_script
q6_scripting_changes xc_libtorch p25_worker_profile p25_compile p25_profiler e1_hparam_sweep e1_hparam_sweep
e2_efficient_blocks x_fast""".split()


def _plan(tmp_path, sections, profiles=None):
    path = tmp_path / "plan.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "profiles": profiles or {"quick": {"defaults": {"epochs": 1}}},
                "notebooks": str(NOTEBOOKS),
                "parts": [{"title": "P", "sections": sections}],
            }
        )
    )
    return path


@pytest.mark.parametrize("profile", ["full", "quick", "gpu"])
def test_the_plan_lists_every_section_in_order(profile):
    plan = load_plan(REPO / "report" / "plan.yaml", profile)
    shown = [s.notebook.stem for s in plan.sections]
    assert shown == [n for n in LAB_NOTEBOOKS if n in shown] and all(s.exists for s in plan.sections)
    if profile != "gpu":
        assert shown == LAB_NOTEBOOKS
    for section in plan.sections:  # every section that takes C3.2's best count is built after C3
        if section.params.get("workers") == -1 and section.name != "c3_workers":
            assert "c3_workers" in section.needs or "c3_workers" in plan.excluded, section.name


@pytest.mark.parametrize(
    "sections, message",
    [
        ([{"notebook": "c1_training", "colour": 1}], r"sections\[0\] \(c1_training\): unknown key\(s\) colour"),
        ([{"notebook": "c1_training", "sweep": {"workers": [0, 2]}}], r"unknown key\(s\) sweep"),
        ([{"notebook": "c1_training", "timeout": "soon"}], r"c1_training.*timeout 'soon' is not a duration"),
        ([{"notebook": "c1_training", "params": {"workers": [0, 2]}}], r"params.workers.*comma-separated text"),
        ([{"notebook": "c1_training", "params": {"workers": {"best_of": "c3"}}}], r"not a parameter value"),
        ([{"notebook": "c1_training", "name": "C1 copy"}], r"'name' must be"),
        (["c1_training", "c1_training"], r"appears twice"),
        ([{"notebook": "C1 Training"}], r"must be a notebook stem"),
        ([{"notebook": "c1_training", "needs": ["c3_workers"]}], r"needs 'c3_workers', which is no section"),
        ([{"notebook": "c1_training", "needs": "c3_workers"}], r"needs must be a list"),
        ([{"notebook": "c1_training", "needs": ["c1_training"]}], r"it needs itself"),
        (
            [{"notebook": "c4_gpu_vs_cpu", "needs": ["c3_workers"]}, {"notebook": "c3_workers"}],
            r"needs c3_workers, which comes after it",
        ),
    ],
)
def test_plan_errors_name_the_bad_entry(tmp_path, sections, message):
    with pytest.raises(PlanError, match=message):
        load_plan(_plan(tmp_path, sections), "quick")


def test_profiles_override_params_and_timeouts_and_needs_close_over(tmp_path):
    path = _plan(
        tmp_path,
        [
            {
                "notebook": "c3_workers",
                "id": "C3",
                "params": {"workers": -1},
                "timeout": 60,
                "profiles": {"quick": {"params": {"max_workers": 2}, "timeout": "2m"}},
            },
            {"notebook": "c4_gpu_vs_cpu", "id": "C4", "needs": ["c3_workers"]},
            {"notebook": "c5_optimizers", "id": "C5", "needs": ["c4_gpu_vs_cpu"]},
        ],
        profiles={"quick": {"timeout": "5m"}, "full": {"timeout": "3h", "exclude": ["c3_workers"]}},
    )
    quick, full = load_plan(path, "quick"), load_plan(path, "full")
    assert quick.section("c3_workers").params == {"workers": -1, "max_workers": 2}
    assert quick.section("c3_workers").timeout_s == 120 and quick.section("c4_gpu_vs_cpu").timeout_s == 300
    assert quick.with_needs(["c5_optimizers"]) == ["c3_workers", "c4_gpu_vs_cpu", "c5_optimizers"]
    assert full.section("c4_gpu_vs_cpu").needs == () and "c3_workers" in full.excluded  # left out: not needed
    with pytest.raises(PlanError, match="profile 'huge' is not in"):
        load_plan(path, "huge")


def test_durations():
    assert parse_duration(90, "x") == 90 and parse_duration("20m", "x") == 1200 and parse_duration("3h", "x") == 10800
    with pytest.raises(PlanError, match="x: timeout '-1s'"):
        parse_duration("-1s", "x")


def test_only_reads_ids_in_the_variants_numbering():
    plan = load_plan(REPO / "report" / "plan.yaml", "quick")
    variants = load_variants(plan)
    assert variants.get("2026").select("C4") == ["c4_gpu_vs_cpu"]
    assert variants.get("2025").select("C4") == ["p25_worker_profile"]  # 2025's C4 is the profiling section
    assert variants.get("2025").select("c8,q5") == ["p25_compile"]  # one notebook answers both
    assert variants.get("all").select("E1") == ["e1_hparam_sweep", "e1_cifar10"]
    assert variants.get("2026").select("c1_training") == ["c1_training"]  # a notebook name works everywhere
    with pytest.raises(VariantError, match=r"ONLY='C10': the 2025 variant has no section C10; its sections are C1, "):
        variants.get("2025").select("C10")
    with pytest.raises(VariantError, match="LAB='2023' is not a variant"):
        variants.get("2023")


def test_the_full_profile_is_the_labs_settings_and_the_quick_one_a_small_subset():
    full, quick = (load_plan(REPO / "report" / "plan.yaml", profile) for profile in ("full", "quick"))
    assert full.lab_settings and full.defaults["limit_train"] == 0 and full.defaults["epochs"] == 5
    assert full.section("p25_compile").params["epochs"] == 10  # the 2025 lab's ten epochs per compile mode
    assert not quick.lab_settings and "full profile" in quick.banner
    assert 0 < quick.defaults["limit_train"] <= 1000 and quick.defaults["epochs"] == 1
    assert quick.section("p25_compile").params["modes"] == "eager,default"
    assert quick.section("p25_compile").timeout_s <= 20 * 60
    # E1: one notebook, two sections (MNIST with the small CNN, CIFAR-10 with ResNet-18), one store of points
    mnist, cifar = quick.section("e1_hparam_sweep"), quick.section("e1_cifar10")
    assert mnist.notebook == cifar.notebook and mnist.store == cifar.store == "e1_hparam_sweep"
    assert mnist.params["data"] == "mnist" and "data" not in cifar.params
    assert (mnist.params["section_name"], cifar.params["section_name"]) == ("e1_hparam_sweep", "e1_cifar10")
    for section in (mnist, cifar):  # a sweep is a notebook parameter: comma-separated text
        assert all(isinstance(section.params[name], str) for name in ("optimizers", "lrs", "schedulers"))
