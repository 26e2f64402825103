"""Shipped specs are package data: every specs/*.hog is in the wheel as hogwild_dsl/specs/,
and reachable by name; a file of the same name wins; an unknown name lists the shipped ones."""
import shutil
import subprocess
import sys
import zipfile

import pytest

import hogwild_dsl
from hogwild_dsl import SpecError, shipped
from conftest import ROOT, SPECS

SHIPPED = sorted(p.stem for p in SPECS.glob("*.hog"))


def test_every_spec_of_the_repository_is_shipped_by_name():
    assert shipped.names() == SHIPPED
    for name in SHIPPED:
        assert shipped.text(name) == (SPECS / f"{name}.hog").read_text()


def test_the_wheel_holds_the_specs(tmp_path):
    src = tmp_path / "src"
    for part in ("hogwild_dsl", "grammar", "templates", "specs"):
        shutil.copytree(ROOT / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, src / part)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n[len("hogwild_dsl/specs/"):-4] for n in names
                  if n.startswith("hogwild_dsl/specs/") and n.endswith(".hog")) == SHIPPED


def test_a_file_wins_over_a_shipped_name_and_unknown_names_list_the_shipped(tmp_path,
                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "svm").write_text((SPECS / "logreg.hog").read_text())
    assert shipped.resolve("svm").samefile(tmp_path / "svm")
    assert hogwild_dsl.load("svm").Trainer.spec.model == "logreg"
    assert shipped.resolve("mc") == shipped.path("mc")
    with pytest.raises(SpecError, match=r"nosuch: no such file, and not a shipped spec "
                       r"\(shipped: " + ", ".join(SHIPPED) + r"\)"):
        hogwild_dsl.load("nosuch")
