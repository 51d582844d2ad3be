"""`make bundle`: what a GPU node without internet needs to run the lab, in one folder (.bundle/).

    python tools/bundle.py --data PATH [--out .bundle] [--python 3.12] [--train 20000] [--test 2000]

- wheels/: the pinned wheels of tools/node-wheels.txt (papermill, nbclient, nbformat, ipykernel,
  jupyter_client and what they need) for the node's CPython on manylinux x86-64, one version each;
  the node installs them with `pip install --no-index --no-deps --target DIR .bundle/wheels/*.whl`.
- cifar10-subset.zip: a class-balanced subset of the real CIFAR-10 image archive (train/<class>/,
  test/<class>/, the same layout), members copied byte for byte, not re-encoded.
- manifest.json: what is inside, with sizes and the subset's source.

The bundle plus the project's tracked files must stay under --limit-mib (the node's copy limit):
the sizes are printed and an oversized bundle is an error. `--check-only` checks the wheel list
(pins parse, one version of each, the required packages present) without downloading anything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEEL_LIST = REPO / "tools" / "node-wheels.txt"
REQUIRED = ("papermill", "nbclient", "nbformat", "ipykernel", "jupyter-client")  # what the node runs notebooks with
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
MIB = 1 << 20


class BundleError(Exception):
    """A bundle that cannot be built as asked; the message says what to do."""


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path = WHEEL_LIST) -> dict[str, str]:
    """name -> version from a `name==version` list; a second version of a name is an error."""
    pins: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9._+-]+)", line)
        if not match:
            raise BundleError(f"{path.name}:{number}: {line!r} is not name==version.")
        name = normalise(match.group(1))
        if name in pins:
            raise BundleError(f"{path.name}:{number}: {name} is pinned twice ({pins[name]} and {match.group(2)}).")
        pins[name] = match.group(2)
    missing = [name for name in REQUIRED if name not in pins]
    if missing:
        raise BundleError(f"{path.name} lacks {', '.join(missing)}, which the node needs to run notebooks.")
    return pins


def wheel_project(filename: str) -> tuple[str, str]:
    """('jupyter-client', '8.10.0') from 'jupyter_client-8.10.0-py3-none-any.whl'."""
    name, version = filename.split("-")[:2]
    return normalise(name), version


def download_wheels(pins: dict[str, str], folder: Path, python: str) -> list[Path]:
    """pip download --no-deps of exactly the pinned versions for the node's platform; stale wheels removed."""
    folder.mkdir(parents=True, exist_ok=True)
    have = {wheel_project(p.name): p for p in folder.glob("*.whl")}
    for (name, version), path in list(have.items()):
        if pins.get(name) != version:
            path.unlink()  # a wheel of another version: two would stop the node's install
            del have[(name, version)]
    wanted = [f"{name}=={version}" for name, version in pins.items() if (name, version) not in have]
    if wanted:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--isolated",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            python,
            "--implementation",
            "cp",
            "--disable-pip-version-check",
            "--progress-bar",
            "off",
            "-q",
            "-d",
            str(folder),
        ]
        for platform in PLATFORMS:
            command += ["--platform", platform]
        done = subprocess.run(command + wanted, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise BundleError(f"pip could not download the node's wheels (needs PyPI):\n{tail}")
    wheels = sorted(folder.glob("*.whl"))
    names = [wheel_project(p.name)[0] for p in wheels]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise BundleError(f"more than one wheel of {', '.join(doubled)} in {folder}; remove the folder and rerun.")
    if sorted(names) != sorted(pins):
        raise BundleError(f"{folder} holds {len(names)} wheels for {len(pins)} pins; remove the folder and rerun.")
    return wheels


def _members(source: Path) -> tuple[dict[str, dict[str, list[str]]], callable]:
    """{split: {class: [member, ...]}} of a train/<class>/, test/<class>/ archive or folder, and a reader."""
    if source.is_file():
        try:
            archive = zipfile.ZipFile(source)
        except zipfile.BadZipFile:
            raise BundleError(
                f"{source} is not a readable .zip; pass DATA=PATH of the CIFAR-10 image archive."
            ) from None
        names, read = [n for n in archive.namelist() if not n.endswith("/")], archive.read
    elif source.is_dir():
        names = [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()]
        read = lambda name: (source / name).read_bytes()  # noqa: E731
    else:
        raise BundleError(
            f"DATA={source} does not exist; pass the CIFAR-10 image archive (train/<class>/, test/<class>/)."
        )
    splits: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for name in names:
        parts = name.split("/")
        for depth in (0, 1):  # train/cls/x.jpg or top/train/cls/x.jpg
            if len(parts) == depth + 3 and parts[depth] in splits:
                splits[parts[depth]].setdefault(parts[depth + 1], []).append(name)
    if not splits["train"] or not splits["test"]:
        raise BundleError(f"{source} has no train/<class>/ and test/<class>/ images.")
    return splits, read


def balanced(by_class: dict[str, list[str]], count: int) -> list[tuple[str, str]]:
    """(class, member) pairs: count // classes per class (the first classes one more), each class's first by name."""
    classes = sorted(by_class)
    per_class, extra = divmod(count, len(classes))
    chosen = []
    for rank, label in enumerate(classes):
        want = per_class + (1 if rank < extra else 0)
        members = sorted(by_class[label])
        if want > len(members):
            raise BundleError(
                f"class {label} has only {len(members)} images; ask for at most {len(members) * len(classes)}."
            )
        chosen += [(label, m) for m in members[:want]]
    return chosen


def write_subset(source: Path, target: Path, train: int, test: int) -> dict:
    splits, read = _members(source)
    counts = {}
    temporary = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as out:  # JPEGs are compressed already
        for split, count in (("train", train), ("test", test)):
            chosen = balanced(splits[split], count)
            for label, member in chosen:
                out.writestr(f"{split}/{label}/{Path(member).name}", read(member))
            counts[split] = len(chosen)
    temporary.replace(target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    return {
        "source": str(source),
        "train_images": counts["train"],
        "test_images": counts["test"],
        "classes": len(splits["train"]),
        "sha256": digest,
    }


def tracked_bytes(repo: Path = REPO) -> int:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout.split(b"\0")
    return sum((repo / f.decode()).stat().st_size for f in files if f and (repo / f.decode()).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="the CIFAR-10 image archive or folder (train/<class>/, test/<class>/)")
    parser.add_argument("--out", default=str(REPO / ".bundle"))
    parser.add_argument("--python", default="3.12", help="the node's CPython version (default 3.12)")
    parser.add_argument("--train", type=int, default=20000, help="training images in the subset")
    parser.add_argument("--test", type=int, default=2000, help="test images in the subset")
    parser.add_argument("--limit-mib", type=float, default=60.0, help="bundle + tracked files must stay under this")
    parser.add_argument("--check-only", action="store_true", help="check the wheel list, download nothing")
    args = parser.parse_args(argv)
    try:
        if not re.fullmatch(r"3\.\d+", args.python):
            raise BundleError(f"--python {args.python!r} is not a CPython version like 3.12.")
        for name in ("train", "test"):
            if getattr(args, name) < 1:
                raise BundleError(f"--{name} {getattr(args, name)} must be at least 1.")
        pins = read_pins()
        if args.check_only:
            print(f"wheel list: {len(pins)} pinned wheels, one version each, {', '.join(REQUIRED)} included")
            return 0
        if not args.data:
            raise BundleError(
                "give the CIFAR-10 image archive: make bundle DATA=PATH (python tools/bundle.py --data PATH)."
            )
        out = Path(args.out)
        wheels = download_wheels(pins, out / "wheels", args.python)
        subset = write_subset(Path(args.data).expanduser(), out / "cifar10-subset.zip", args.train, args.test)
        manifest = {
            "python": args.python,
            "platforms": list(PLATFORMS),
            "wheels": [p.name for p in wheels],
            "subset": subset,
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
        bundle, tracked = folder_bytes(out), tracked_bytes()
        print(f"wheels: {len(wheels)} for CPython {args.python} ({folder_bytes(out / 'wheels') / MIB:.1f} MiB)")
        print(
            f"subset: {subset['train_images']:,} train / {subset['test_images']:,} test images, "
            f"{subset['classes']} classes ({(out / 'cifar10-subset.zip').stat().st_size / MIB:.1f} MiB)"
        )
        print(
            f"size: bundle {bundle / MIB:.1f} MiB + tracked files {tracked / MIB:.1f} MiB = "
            f"{(bundle + tracked) / MIB:.1f} MiB (limit {args.limit_mib:g} MiB)"
        )
        if bundle + tracked > args.limit_mib * MIB:
            raise BundleError(
                f"the bundle and the tracked files take {(bundle + tracked) / MIB:.1f} MiB, over "
                f"{args.limit_mib:g} MiB; use fewer images (BUNDLE_TRAIN=..., BUNDLE_TEST=...)."
            )
        print(f"bundle ready: {out}")
        return 0
    except BundleError as error:
        print(f"make bundle: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
