"""Unit tests of lablib.sections.inference and lablib.sections.introspect (CPU; CUDA variants carry the marker)."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lablib.core.config import make_config
from lablib.core.data import load_data
from lablib.core.errors import LabError
from lablib.core.model import SmallCNN, count_gradients, count_macs, count_parameters, resnet18
from lablib.core.optim import make_optimizer, state_size
from lablib.core.runs import start_run
from lablib.core.train import evaluate
from lablib.sections import inference
from lablib.sections.inference import (
    FLOAT_TOLERANCE,
    RUNTIMES,
    SCRIPTED_FILE,
    SINGLE_IMAGE,
    STATE_DICT_FILE,
    PairEval,
    c7_sentence,
    c8_sentence,
    c9_sentence,
    c10_paragraphs,
    captured_warnings,
    describe_latency,
    evaluate_pair,
    example_images,
    find_source_run,
    graph_text,
    latency_devices,
    latency_results,
    latency_summary,
    latency_table,
    load_resnet18,
    load_scripted,
    max_abs_difference,
    measure_latency,
    obtain_model,
    operation_sequence,
    output_verdict,
    prepare_runtimes,
    script_model,
    script_save_reload,
    shape_text,
    top_level_operations,
    warning_paragraphs,
)
from lablib.sections.introspect import (
    SignBranch,
    VariadicForward,
    conv_layers,
    count_convs,
    forward_annotations,
    module_shapes,
    optimizer_state_breakdown,
    parameter_breakdown,
    q1_sentence,
    q2_sentence,
    q3_sentence,
    q4_sentence,
    q5_sentence,
    q6_sentence,
    scripted_module_types,
    synthetic_batch,
    trace_vs_script,
    try_script,
)

TORCH_DEPRECATES_JIT = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 13)


def tiny_cnn() -> nn.Module:
    """A model small enough that scripting, exporting and compiling it take seconds."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)
    ).eval()


@pytest.fixture(scope="module")
def trained_resnet():
    torch.manual_seed(0)
    return resnet18().eval()


# --- warnings and TorchScript ----------------------------------------------------------


def test_captured_warnings_keeps_each_distinct_text_once_in_order():
    with captured_warnings() as texts:
        for _ in range(3):
            warnings.warn("first", DeprecationWarning, stacklevel=2)
        warnings.warn("second", UserWarning, stacklevel=2)
    assert texts == ["DeprecationWarning: first", "UserWarning: second"]


def test_script_model_captures_the_deprecation_warning(trained_resnet):
    scripted = script_model(trained_resnet)
    assert isinstance(scripted.module, torch.jit.ScriptModule)
    assert len(scripted.warnings) == len(set(scripted.warnings))  # 33 submodules, one line each
    if TORCH_DEPRECATES_JIT:
        assert any(line.startswith("DeprecationWarning") and "torch.jit.script" in line for line in scripted.warnings)


def test_script_save_reload_writes_both_files_and_compares(tmp_path, trained_resnet):
    images = torch.randn(3, 3, 32, 32)
    record = script_save_reload(trained_resnet, tmp_path / "run", images)
    assert record.scripted_path == tmp_path / "run" / SCRIPTED_FILE and record.scripted_path.stat().st_size > 1e6
    assert record.state_dict_path.exists()
    assert record.compared_images == 3
    assert record.max_abs_difference == 0.0 and record.identical  # same CPU kernels, same weights
    assert set(record.warnings) == {"torch.jit.script", "torch.jit.save", "torch.jit.load"}
    # The files load back on their own: eager from the state_dict, TorchScript without the class.
    rebuilt = load_resnet18(record.state_dict_path)
    reloaded = load_scripted(record.scripted_path)
    with torch.no_grad():
        assert torch.equal(rebuilt(images), trained_resnet(images))
        assert torch.equal(reloaded.module(images), trained_resnet(images))


def test_max_abs_difference_sees_a_change():
    model = tiny_cnn()
    changed = tiny_cnn()
    with torch.no_grad():
        changed[4].bias += 0.25
    images = torch.randn(2, 3, 8, 8)
    assert max_abs_difference(model, model, images) == 0.0
    assert max_abs_difference(model, changed, images) == pytest.approx(0.25, abs=1e-6)


def test_example_images_stacks_the_first_images():
    dataset = TensorDataset(torch.arange(5.0).view(5, 1, 1, 1).expand(5, 3, 2, 2), torch.zeros(5))
    batch = example_images(dataset, 3)
    assert batch.shape == (3, 3, 2, 2) and batch[:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0]
    assert len(example_images(dataset, 50)) == 5
    with pytest.raises(LabError):
        example_images(TensorDataset(torch.zeros(0, 3), torch.zeros(0)), 4)


# --- C8: graph and operations ------------------------------------------------------------


def test_graph_text_and_top_level_operations_follow_the_model(trained_resnet):
    scripted = script_model(trained_resnet).module
    assert graph_text(scripted).startswith("graph(%self")
    assert 'prim::CallMethod[name="features"]' in graph_text(scripted)
    assert 'name="layer4"' in graph_text(scripted, "features")
    operations = top_level_operations(scripted)
    assert operations.operation.tolist() == [
        "conv1.forward",
        "bn1.forward",
        "F.relu",
        "layer1.forward",
        "layer2.forward",
        "layer3.forward",
        "layer4.forward",
        "F.adaptive_avg_pool2d",
        "aten::flatten",
        "fc.forward",
    ]
    assert operations.step.tolist() == list(range(1, 11))
    assert operations.set_index("operation").loc["layer1.forward", "type"] == "Sequential"
    assert set(operations["in method"]) == {"features", "forward"}


def test_top_level_operations_shows_a_branch_as_one_operator():
    with captured_warnings():
        scripted = torch.jit.script(SignBranch())
    kinds = top_level_operations(scripted).operation.tolist()
    assert "prim::If" in kinds and "aten::sum" in kinds


# --- where the model comes from -----------------------------------------------------------------


def _c7_run(model: nn.Module | None, tag: str, fingerprint: str, complete: bool = True, files: bool = True):
    """A c7_torchscript record; with model=None the two model files are placeholders (enough for the search)."""
    run = start_run(
        "c7_torchscript", make_config(device="cpu"), tag=tag, data={"fingerprint": fingerprint, "train_images": 16}
    )
    if files and model is not None:
        script_save_reload(model, run.path, torch.randn(2, 3, 32, 32))
    elif files:
        for name in (SCRIPTED_FILE, STATE_DICT_FILE):
            (run.path / name).write_bytes(b"placeholder")
    if complete:
        run.finish()
    return run


def test_find_source_run_picks_the_latest_complete_matching_run():
    assert find_source_run("t", "fp") is None
    _c7_run(None, "other-tag", "fp")
    _c7_run(None, "t", "other-data")
    _c7_run(None, "t", "fp", complete=False)
    _c7_run(None, "t", "fp", files=False)
    assert find_source_run("t", "fp") is None
    first = _c7_run(None, "t", "fp")
    assert find_source_run("t", "fp") == first.path
    second = _c7_run(None, "t", "fp")
    second.meta["ended"] = "9999"  # finished later than the first
    from lablib.core.runs import write_json

    write_json(second.path / "run.json", second.meta)
    assert find_source_run("t", "fp") == second.path
    # An explicit choice wins, by path or by run id; a wrong one is an error that says what to do.
    assert find_source_run("t", "fp", str(first.path)) == first.path
    assert find_source_run("anything", "else", first.run_id) == first.path
    with pytest.raises(LabError, match="source_run"):
        find_source_run("t", "fp", "no-such-run")
    unfinished = _c7_run(None, "t", "fp", complete=False)
    with pytest.raises(LabError, match="status 'running'"):
        find_source_run("t", "fp", str(unfinished.path))


def test_obtain_model_trains_when_no_c7_run_then_loads_c7(tmp_path):
    config = make_config(data="fake", limit_train=8, limit_test=4, epochs=1, workers=0, device="cpu", batch_size=8)
    bundle = load_data(
        config.data, config.data_dir, config.download, config.limit_train, config.limit_test, config.seed
    )
    run = start_run("c9_eval", config, tag="t", data=bundle, device="cpu")
    source = obtain_model(config, bundle, tag="t", run=run)
    assert source.trained_here and source.origin == "trained here" and source.trained_epochs == 1
    assert (run.path / SCRIPTED_FILE).exists() and (run.path / STATE_DICT_FILE).exists()
    assert len(run.epochs) == 1  # the training was recorded in the section's own run
    assert "No complete `c7_torchscript` record with tag 't'" in source.describe("t", bundle.fingerprint)
    assert source.record.identical
    run.finish()
    with pytest.raises(LabError, match="start a run"):
        obtain_model(config, bundle, tag="t", run=None)

    c7 = _c7_run(source.model, "t", bundle.fingerprint)
    loaded = obtain_model(config, bundle, tag="t")
    assert not loaded.trained_here and loaded.origin == f"c7_torchscript/{c7.run_id}"
    assert c7.run_id in loaded.describe("t", bundle.fingerprint)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(images), source.model(images))
        assert torch.equal(loaded.scripted(images), source.model(images))


# --- C9 --------------------------------------------------------------------------------------------


def test_evaluate_pair_matches_evaluate_and_counts_disagreements():
    torch.manual_seed(1)
    images, labels = torch.randn(40, 3, 8, 8), torch.randint(0, 10, (40,))
    loader = DataLoader(TensorDataset(images, labels), batch_size=16)
    model, other = tiny_cnn(), tiny_cnn()
    with torch.no_grad():
        other[4].weight.mul_(-1)  # different predictions
    with captured_warnings():
        scripted = torch.jit.script(model)
    same = evaluate_pair(model, scripted, loader, torch.device("cpu"))
    assert same.images == 40 and same.disagreements == 0 and same.max_abs_difference == 0.0
    assert same.accuracy_eager == same.accuracy_scripted == evaluate(model, loader, torch.device("cpu")).accuracy
    with captured_warnings():
        scripted_other = torch.jit.script(other)
    different = evaluate_pair(model, scripted_other, loader, torch.device("cpu"))
    with torch.no_grad():
        expected = int((model(images).argmax(1) != other(images).argmax(1)).sum())
    assert different.disagreements == expected > 0
    assert different.accuracy_scripted == pytest.approx(evaluate(other, loader, torch.device("cpu")).accuracy)
    assert different.max_abs_difference > 0


# --- C10 -------------------------------------------------------------------------------------------


def test_latency_summary_takes_seconds_and_gives_milliseconds():
    summary = latency_summary([0.001, 0.002, 0.003, 0.004])
    assert summary.runs == 4 and summary.mean_ms == pytest.approx(2.5) and summary.median_ms == pytest.approx(2.5)
    assert summary.std_ms == pytest.approx(math.sqrt(5 / 3))
    assert summary.p5_ms == pytest.approx(1.15) and summary.p95_ms == pytest.approx(3.85)
    assert summary.min_ms == pytest.approx(1.0) and summary.max_ms == pytest.approx(4.0)
    assert summary.spread == pytest.approx(3.85 / 1.15) and summary.relative_std == pytest.approx(
        math.sqrt(5 / 3) / 2.5
    )
    assert latency_summary([0.002]).std_ms == 0.0 and set(summary.to_dict()) >= {"runs", "mean_ms", "max_ms"}
    with pytest.raises(LabError):
        latency_summary([])


def test_measure_latency_counts_the_calls(monkeypatch):
    calls = []
    model = tiny_cnn()

    def counted(x):
        calls.append(torch.is_grad_enabled())
        return model(x)

    stats = measure_latency(counted, torch.randn(1, 3, 8, 8), torch.device("cpu"), warmup_runs=3, timed_runs=7)
    assert len(calls) == 10 and not any(calls)  # warm-up + timed, all under no_grad
    assert stats.runs == 7 and 0 < stats.min_ms <= stats.median_ms <= stats.p95_ms <= stats.max_ms
    with pytest.raises(LabError):
        measure_latency(counted, torch.randn(1, 3, 8, 8), torch.device("cpu"), warmup_runs=0, timed_runs=0)


def test_latency_table_rows_statuses_and_speedups(tmp_path):
    table = latency_table(
        tiny_cnn(), None, ["cpu", "cuda"], tmp_path, warmup_runs=2, timed_runs=5, aoti=False, progress=False
    )
    assert list(zip(table.device, table.runtime)) == [(d, r) for d in ("cpu", "cuda") for r in RUNTIMES]
    cpu = table[table.device == "cpu"].set_index("runtime")
    assert (cpu.loc[["PyTorch eager", "TorchScript", "torch.export"], "status"] == "measured").all()
    assert cpu.loc["AOTInductor", "status"].startswith("skipped")
    assert cpu.loc["PyTorch eager", "speedup_vs_eager"] == 1.0
    assert cpu.loc["TorchScript", "speedup_vs_eager"] == pytest.approx(
        cpu.loc["PyTorch eager", "mean_ms"] / cpu.loc["TorchScript", "mean_ms"]
    )
    assert (cpu.loc[["TorchScript", "torch.export"], "max_abs_diff"] < 1e-5).all()
    assert (table.cpu_threads == torch.get_num_threads()).all() and (table.timed_runs == 5).all()
    if not torch.cuda.is_available():
        assert table[table.device == "cuda"].status.str.startswith("not measured").all()
        assert table[table.device == "cuda"].mean_ms.isna().all()
    results = latency_results(table)
    assert results["cpu TorchScript mean_ms"] == cpu.loc["TorchScript", "mean_ms"]
    assert results["cpu AOTInductor status"].startswith("skipped") and "cpu AOTInductor mean_ms" not in results
    lines = describe_latency(table)
    assert lines[0].startswith("- **cpu**: TorchScript") and f"{cpu.loc['TorchScript', 'mean_ms']:.3f} ms" in lines[0]
    if not torch.cuda.is_available():
        assert lines[1] == "- **cuda**: not measured (no CUDA GPU visible on this machine)."


def test_describe_latency_warns_about_a_noisy_machine():
    rows = [
        {
            "device": "cpu",
            "runtime": runtime,
            "status": "measured",
            "mean_ms": mean,
            "median_ms": mean,
            "p5_ms": mean * 0.9,
            "p95_ms": mean * p95,
            "speedup_vs_eager": 10.0 / mean,
        }
        for runtime, mean, p95 in [("PyTorch eager", 10.0, 1.1), ("TorchScript", 8.0, 1.2)]
    ]
    quiet = describe_latency(pd.DataFrame(rows))
    assert len(quiet) == 1 and "speed-up of 1.25×" in quiet[0] and "fastest is TorchScript (8.000 ms" in quiet[0]
    rows[1]["p95_ms"] = 8.0 * 5
    noisy = describe_latency(pd.DataFrame(rows))
    assert len(noisy) == 2 and "95th percentile of TorchScript is 5.6× its 5th" in noisy[1]


def test_aoti_compiles_and_matches_eager_or_says_why_not(tmp_path):
    """AOTInductor end to end on a tiny model (a C++ compile: the slowest unit test here)."""
    runtimes = prepare_runtimes(tiny_cnn(), None, torch.device("cpu"), tmp_path, aoti=True)
    reason = inference.aoti_unavailable_reason(torch.device("cpu"))
    if reason is not None:
        assert runtimes["AOTInductor"] == f"not available: {reason}" or runtimes["AOTInductor"] == reason
        pytest.skip(f"AOTInductor not available here: {reason}")
    compiled = runtimes["AOTInductor"]
    assert not isinstance(compiled, str), compiled
    assert list(tmp_path.glob("*.pt2"))
    example = torch.randn(SINGLE_IMAGE)
    assert max_abs_difference(runtimes["PyTorch eager"], compiled, example) < 1e-5
    assert max_abs_difference(runtimes["PyTorch eager"], runtimes["torch.export"], example) < 1e-6


def test_runtime_failures_become_not_available_rows(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("export refused\nsecond line")

    monkeypatch.setattr(torch.export, "export", refuse)
    runtimes = prepare_runtimes(tiny_cnn(), tmp_path / "missing.pt", torch.device("cpu"), tmp_path, aoti=True)
    assert runtimes["torch.export"] == "not available: RuntimeError: export refused"
    assert runtimes["TorchScript"].startswith("not available: ")  # the file does not exist
    assert runtimes["AOTInductor"].startswith("not available: ")


def test_latency_devices():
    assert latency_devices("auto") == ["cpu", "cuda"] and latency_devices("cpu") == ["cpu"]
    with pytest.raises(LabError):
        latency_devices("tpu")


# --- the sentences of C7-C10 ----------------------------------------------------------------------


def test_output_verdict_thresholds():
    assert output_verdict(0.0).startswith("identical")
    assert output_verdict(FLOAT_TOLERANCE / 2).startswith("equal within float rounding")
    assert output_verdict(FLOAT_TOLERANCE * 2).startswith("**different**")
    assert shape_text(SINGLE_IMAGE) == "1×3×32×32"


def test_c7_sentence_and_warnings_quote_the_record(tmp_path):
    record = script_save_reload(tiny_cnn(), tmp_path, torch.randn(5, 3, 8, 8))
    epochs = [SimpleNamespace(loss=2.5, accuracy=10.0), SimpleNamespace(loss=1.23456, accuracy=55.5)]
    text = c7_sentence(record, epochs, 1234, "cpu")
    assert "after 2 epoch(s) on 1,234 training images on `cpu`" in text and "loss 1.235, accuracy 55.50 %" in text
    assert "On 5 test images" in text and f"**{record.max_abs_difference:.3g}**" in text
    assert output_verdict(record.max_abs_difference) in text
    assert warning_paragraphs({}, "9.9") == ["torch 9.9 raised no warning while scripting, saving and loading."]
    quiet = warning_paragraphs({"torch.jit.save": ["UserWarning: x"], "torch.jit.load": ["UserWarning: x"]}, "9.9")
    assert quiet[0].splitlines() == ["- `torch.jit.save`: *UserWarning: x*", "- `torch.jit.load`: *UserWarning: x*"]
    assert "1 distinct warning(s)" in quiet[1] and "DeprecationWarning" not in quiet[1]
    deprecated = warning_paragraphs({"torch.jit.script": ["DeprecationWarning: gone soon"]}, "9.9")
    assert "*DeprecationWarning: gone soon*" in deprecated[0] and "torch.export" in deprecated[1]


def test_c8_sentence_reads_the_steps_from_the_module(trained_resnet):
    scripted = script_model(trained_resnet).module
    operations = top_level_operations(scripted)
    sequence = operation_sequence(operations)
    assert sequence[:4] == ["conv1", "bn1", "F.relu", "layer1"] and sequence[-1] == "fc"
    text = c8_sentence(scripted, operations)
    assert f"performs {len(sequence)} top-level operations: " + " → ".join(f"`{n}`" for n in sequence) in text
    assert "`layer1`–`layer4` (each a Sequential of 2 × BasicBlock)" in text  # four groups, one description
    assert "`conv1` (a Conv2d)" in text and "`fc` (a Linear)" in text
    small = torch.jit.script(nn.Sequential(nn.Linear(4, 4)))
    assert "one `prim::CallMethod`" in c8_sentence(small, top_level_operations(small))


def test_c9_sentence_checks_the_accuracies():
    same = PairEval(81.25, 81.25, 0.5, 0.5, 1600, 0, 0.0)
    text = c9_sentence(same, "cpu")
    assert "on 1,600 test images on `cpu`" in text and "81.25 % top-1" in text and "**identical**" in text
    assert "on 0 image(s)" in text and "identical (bitwise)" in text
    different = PairEval(81.25, 80.0, 0.5, 0.6, 1600, 20, 0.3)
    text = c9_sentence(different, "cuda")
    assert "**different** (by 1.2500 points)" in text and "on 20 image(s)" in text and "0.3" in text


def _latency_rows(cuda_status: str = "not measured: no CUDA GPU visible on this machine") -> pd.DataFrame:
    rows = [
        {"device": "cpu", "runtime": runtime, "status": "measured", "mean_ms": mean, "median_ms": mean}
        | {"p5_ms": mean * 0.9, "p95_ms": mean * 1.1, "speedup_vs_eager": 10.0 / mean}
        | {"cpu_threads": 3, "warmup_runs": 7, "timed_runs": 11}
        for runtime, mean in [("PyTorch eager", 10.0), ("TorchScript", 8.0)]
    ]
    rows.append({"device": "cuda", "runtime": "PyTorch eager", "status": cuda_status})
    rows[-1] |= {"cpu_threads": 3, "warmup_runs": 7, "timed_runs": 11}
    return pd.DataFrame(rows)


def test_c10_paragraphs_say_how_it_was_timed_and_what_is_missing():
    gmacs = count_macs(resnet18()) / 1e9
    head, bullets = c10_paragraphs(_latency_rows(), "Some CPU", gmacs)
    assert "over 11 timed runs after 7 warm-up runs" in head and "3 intra-op thread(s) on Some CPU" in head
    assert f"{gmacs:.2f} GMACs" in head and "1×3×32×32" in head
    assert "the GPU rows are not measured" in head
    assert bullets.splitlines()[0].startswith("- **cpu**: TorchScript 8.000 ms against eager 10.000 ms")
    measured_gpu = _latency_rows("measured")
    measured_gpu.loc[2, ["mean_ms", "median_ms", "p5_ms", "p95_ms", "speedup_vs_eager"]] = [1.0, 1.0, 0.9, 1.1, 1.0]
    head, bullets = c10_paragraphs(measured_gpu, "Some CPU", gmacs)
    assert "not measured" not in head and bullets.splitlines()[1].startswith("- **cuda**: fastest is PyTorch eager")


@pytest.mark.cuda
def test_cuda_script_and_latency(tmp_path):
    model = tiny_cnn().cuda()
    record = script_save_reload(model, tmp_path, torch.randn(4, 3, 32, 32, device="cuda"))
    assert record.max_abs_difference < 1e-5
    table = latency_table(
        tiny_cnn(), record.scripted_path, ["cuda"], tmp_path, warmup_runs=3, timed_runs=10, aoti=False, progress=False
    )
    assert (
        table.set_index("runtime").loc[["PyTorch eager", "TorchScript", "torch.export"], "status"] == "measured"
    ).all()


# --- introspect (Q1-Q6) ---------------------------------------------------------------------------------


def test_conv_counts_from_the_model():
    assert count_convs(resnet18()) == count_convs(resnet18(batch_norm=False))
    counts = count_convs(resnet18())
    assert (counts.total, counts.shortcut, counts.without_shortcut) == (20, 3, 17)
    table = conv_layers(resnet18())
    assert table[table.shortcut].name.tolist() == ["layer2.0.shortcut.0", "layer3.0.shortcut.0", "layer4.0.shortcut.0"]
    assert (table[table.shortcut].kernel == "1x1").all() and (table[~table.shortcut].kernel == "3x3").all()
    small = count_convs(SmallCNN())
    assert (small.total, small.shortcut) == (2, 0)


def test_module_shapes_via_hooks_leave_the_model_untouched():
    model = resnet18().train()
    images, _ = synthetic_batch(2)
    shapes = module_shapes(model, images, ["layer4", "fc"]).set_index("module")
    assert shapes.loc["layer4", "output_shape"] == (2, 512, 4, 4)
    assert shapes.loc["fc", "input_shape"] == (2, 512) and shapes.loc["fc", "output_shape"] == (2, 10)
    assert model.training  # mode restored
    assert not model.layer4._forward_hooks and not model.fc._forward_hooks  # hooks removed
    with pytest.raises(KeyError, match="layer9"):
        module_shapes(model, images, ["layer9"])


def test_synthetic_batch_is_seeded():
    first, second = synthetic_batch(4, seed=3), synthetic_batch(4, seed=3)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[0].shape == (4, 3, 32, 32) and first[1].shape == (4,) and int(first[1].max()) < 10


@pytest.mark.parametrize("optimizer,ratio", [("sgd", 1), ("adam", 2)])
def test_parameters_gradients_and_state_after_a_real_step(optimizer, ratio):
    model = resnet18()
    images, labels = synthetic_batch(2)
    optim = make_optimizer(optimizer, model.parameters())
    assert count_gradients(model) == 0 and state_size(optim) == 0
    nn.functional.cross_entropy(model(images), labels).backward()
    optim.step()
    parameters = count_parameters(model)
    assert count_gradients(model) == parameters == 11_173_962
    assert state_size(optim) == ratio * parameters
    states = optimizer_state_breakdown(optim).set_index("state")
    assert states.elements.drop("step", errors="ignore").sum() == ratio * parameters
    breakdown = parameter_breakdown(model).set_index("layer type")
    assert breakdown.loc["total", "parameters"] == parameters and breakdown.loc["BatchNorm2d", "parameters"] == 9600


def test_parameter_breakdown_without_batch_norm():
    breakdown = parameter_breakdown(resnet18(batch_norm=False)).set_index("layer type")
    assert "BatchNorm2d" not in breakdown.index and breakdown.loc["total", "parameters"] == 11_164_362


def test_tracing_loses_the_branch_scripting_keeps_it():
    demo = trace_vs_script(
        SignBranch(), torch.ones(1, 3), {"positive": torch.ones(1, 3), "negative": -torch.ones(1, 3)}
    )
    rows = demo.table.set_index("input")
    assert rows.loc["positive", "traced matches eager"] and not rows.loc["negative", "traced matches eager"]
    assert rows["scripted matches eager"].all()
    assert rows.loc["negative", "traced"] == [-2.0, -2.0, -2.0] and rows.loc["negative", "eager"] == [1.0, 1.0, 1.0]
    assert not demo.traced_graph_has_branch and demo.scripted_graph_has_branch
    assert any(line.startswith("TracerWarning") for line in demo.trace_warnings)
    # Traced with a negative example, the other branch is the one that is lost.
    flipped = trace_vs_script(SignBranch(), -torch.ones(1, 3), {"positive": torch.ones(1, 3)})
    assert not flipped.table.loc[0, "traced matches eager"]


def test_try_script_and_what_scripting_compiled():
    rejected = try_script(VariadicForward())
    assert not rejected.ok and "variable number of arguments" in rejected.message
    accepted = try_script(resnet18())
    assert accepted.ok and accepted.message == ""
    if TORCH_DEPRECATES_JIT:
        assert any("deprecated" in line for line in accepted.warnings)
    scripted = script_model(resnet18()).module
    types = scripted_module_types(scripted).set_index("class")["compiled modules"]
    assert types["Conv2d"] == 20 and types["BatchNorm2d"] == 20 and types["BasicBlock"] == 8 and types["ResNet"] == 1
    annotations = forward_annotations(resnet18())
    assert annotations["BasicBlock"] == "(x: torch.Tensor) -> torch.Tensor"
    assert "unannotated" in annotations["Sequential"]
    assert isinstance(pd.DataFrame([annotations]), pd.DataFrame)


# --- the sentences of Q1-Q6 -------------------------------------------------------------------------


def test_q1_sentence_counts_from_the_table():
    convs = conv_layers(resnet18())
    text = q1_sentence(convs, linear_layers=1)
    assert (
        "**20 convolutional layers**" in text
        and "the 3 projection convolutions in the shortcuts (1x1)" in text
        and "**17** without them" in text
    )
    assert "1 stem convolution(s) plus 2 per residual block × 8 blocks" in text
    assert "plus 1 linear layer(s): 18, the number in the name" in text
    assert "`layer2.0.shortcut.0` in block `layer2.0` (64 → 128 channels, stride 2)" in text
    plain = q1_sentence(conv_layers(SmallCNN()), linear_layers=2)  # no blocks, no shortcuts
    assert "**2 convolutional layers**" in plain and "projections sit" not in plain


def test_q2_sentence_explains_the_input_size():
    model = resnet18()
    images, _ = synthetic_batch(2)
    shapes = module_shapes(model, images, ["conv1", "layer1", "layer2", "layer3", "layer4", "fc"])
    with torch.no_grad():
        feature_map = tuple(model.features(images).shape)
    text = q2_sentence(shapes, model.fc.in_features, model.fc.out_features, feature_map)
    assert "takes **512** inputs" in text and "gives 10 class scores" in text
    assert "goes 32 → 32 → 32 → 16 → 8 → 4 through `conv1`, `layer1`" in text and "B × 512 × 4 × 4" in text
    assert "(2, 512)" in text and "512×4×4 = 8,192 inputs" in text


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_q3_q4_sentences_quote_the_counts(optimizer):
    config = make_config(optimizer=optimizer)
    model = resnet18()
    images, labels = synthetic_batch(2)
    optim = make_optimizer(optimizer, model.parameters(), config.lr, config.momentum, config.weight_decay)
    nn.functional.cross_entropy(model(images), labels).backward()
    optim.step()
    parameters = count_parameters(model)
    state = optimizer_state_breakdown(optim)
    breakdown = parameter_breakdown(model)
    text = q3_sentence(config, parameters, 0, count_gradients(model), breakdown, state)
    assert f"**{parameters:,} trainable parameters** in 62 tensors" in text and "BatchNorm2d 9,600" in text
    assert f"**{parameters:,} gradients** (before it: 0): one gradient element per trainable parameter" in text
    ratio = 1 if optimizer == "sgd" else 2
    assert f"{ratio * parameters:,} elements ({ratio}× the parameters)" in text
    assert ("`momentum_buffer`" in text) == ("momentum 0.9" in text) == (optimizer == "sgd")
    assert ("`exp_avg_sq`" in text) == (optimizer == "adam")
    partial = q3_sentence(config, parameters, 0, parameters - 10, breakdown, state)
    assert f"only {parameters - 10:,} of the {parameters:,} parameters" in partial
    text = q4_sentence(config, parameters, parameters, state, 4, parameters)
    assert f"holds **{ratio * parameters:,} elements** = {ratio} × {parameters:,}" in text
    assert f"{ratio * parameters * 4 / 1e6:.1f} MB at 4 bytes per element" in text
    assert ("`step` counters are scalars" in text) == (optimizer == "adam")


def test_q5_sentence_follows_the_demonstration():
    inputs = {"positive": torch.ones(1, 3), "negative": -torch.ones(1, 3)}
    demo = trace_vs_script(SignBranch(), torch.ones(1, 3), inputs)
    text = q5_sentence(demo, torch.ones(1, 3))
    assert "whose sum is 3" in text and "has no branch" in text and "wrong answer for negative input(s)" in text
    assert "keeps the branch and matches eager on 2 of 2 inputs" in text and "*TracerWarning" in text
    demo.trace_warnings.clear()
    assert "gave no TracerWarning" in q5_sentence(demo, torch.ones(1, 3))


def test_q6_sentence_from_what_scripting_did():
    model = resnet18()
    scripted = script_model(model)
    types = scripted_module_types(scripted.module)
    methods = {name: hasattr(scripted.module, name) for name in ("forward", "features", "_make_layer")}
    rejected = try_script(VariadicForward())
    text = q6_sentence(types, methods, forward_annotations(model), 0.0, scripted.warnings, rejected)
    assert f"({int(types['compiled modules'].sum())} modules of {len(types)} classes" in text
    assert "identical (bitwise)" in text and "compiled: forward, features; not compiled: _make_layer" in text
    assert "unannotated arguments (Sequential) default to Tensor" in text and "`forward(self, *inputs)`" in text
    accepted = try_script(resnet18())
    text = q6_sentence(types, methods, forward_annotations(model), 2 * FLOAT_TOLERANCE, ["UserWarning: w."], accepted)
    assert "**different**" in text and "forward(self, *inputs)" not in text and text.endswith("UserWarning: w.")
