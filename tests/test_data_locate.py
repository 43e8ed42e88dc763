"""Finding the data: explicit > MTKIT_DATA > the project's data/ > demo, and errors instead of silent fallbacks."""
from __future__ import annotations

import pytest

from mtkit.data import TaskSpec, locate
from mtkit.data.demo import write_demo_data
from mtkit.data.locate import find_data_dir, required_files
from mtkit.data.tasks import default_tasks

NAMES = required_files(default_tasks())


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No MTKIT_DATA, an empty working directory, and a private cache."""
    monkeypatch.delenv("MTKIT_DATA", raising=False)
    monkeypatch.setenv("MTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(locate, "installed_root", lambda: None)  # not the data/ of the checkout running the tests
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def fake_real(folder, names=NAMES):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text("\tid\tsentence\tsentiment\n0\ta\tb\t1\n")
    return folder


def test_required_files_are_train_and_dev():
    assert NAMES == ["ids-sst-train.csv", "ids-sst-dev.csv", "quora-train.csv", "quora-dev.csv",
                     "sts-train.csv", "sts-dev.csv"]


def test_order_explicit_then_env_then_local(clean_env, monkeypatch):
    explicit = fake_real(clean_env / "explicit")
    env = fake_real(clean_env / "env")
    local = fake_real(clean_env / "work" / "data")
    monkeypatch.setenv("MTKIT_DATA", str(env))
    assert find_data_dir(explicit).path == explicit
    source = find_data_dir()
    assert source.path == env and source.kind == "real" and "$MTKIT_DATA" in source.description
    monkeypatch.delenv("MTKIT_DATA")
    assert find_data_dir().path.resolve() == local.resolve()


def test_demo_when_nothing_is_found_and_it_says_so(clean_env):
    source = find_data_dir()
    assert source.kind == "demo" and "demo" in source.description and "mtkit data fetch" in source.description
    assert (source.path / "ids-sst-train.csv").is_file()
    assert str(source.path).startswith(str(clean_env / "cache"))


def test_without_demo_the_error_lists_files_and_fetch_command(clean_env):
    with pytest.raises(FileNotFoundError) as err:
        find_data_dir(allow_demo=False)
    message = str(err.value)
    assert all(name in message for name in NAMES) and "mtkit data fetch --dest ./data" in message


def test_explicit_path_that_does_not_exist_is_an_error_not_demo(clean_env, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_data_dir(clean_env / "nope")
    monkeypatch.setenv("MTKIT_DATA", str(clean_env / "nope-either"))
    with pytest.raises(FileNotFoundError, match=r"\$MTKIT_DATA"):
        find_data_dir()


def test_incomplete_folders_name_the_missing_files(clean_env):
    partial = fake_real(clean_env / "partial", NAMES[:2])
    with pytest.raises(FileNotFoundError) as err:
        find_data_dir(partial)
    assert "quora-train.csv" in str(err.value) and "ids-sst-train.csv" not in str(err.value).split("lacks")[1]
    fake_real(clean_env / "work" / "data", NAMES[:1])  # a partial ./data is an error too, not a demo fallback
    with pytest.raises(FileNotFoundError, match="lacks"):
        find_data_dir()


def test_demo_folder_is_recognised_anywhere(clean_env):
    folder = write_demo_data(clean_env / "mydemo", sizes={"train": 10, "dev": 5, "test": 5})
    source = find_data_dir(folder)
    assert source.kind == "demo" and "not the CS224N data" in source.description


def test_custom_tasks(clean_env):
    spec = TaskSpec("cfimdb", "classification", "ids-cfimdb-train.csv", "ids-cfimdb-dev.csv")
    folder = fake_real(clean_env / "cf", ["ids-cfimdb-train.csv", "ids-cfimdb-dev.csv"])
    assert find_data_dir(folder, tasks=[spec]).kind == "custom"
    with pytest.raises(FileNotFoundError, match="ids-cfimdb-train.csv"):
        find_data_dir(tasks=[spec])  # the demo set cannot stand in for a custom task
    sst_f1 = TaskSpec("sst", "classification", "ids-sst-train.csv", "ids-sst-dev.csv", metric="macro_f1")
    assert find_data_dir(tasks=[sst_f1]).kind == "demo"  # other options, same files: the demo set still fits


def test_custom_task_with_absolute_paths_needs_no_data_folder(clean_env, monkeypatch):
    folder = fake_real(clean_env / "elsewhere", ["cf-train.csv", "cf-dev.csv"])
    spec = TaskSpec("cfimdb", "classification", str(folder / "cf-train.csv"), str(folder / "cf-dev.csv"))
    source = find_data_dir(tasks=[spec], allow_demo=False)
    assert source.kind == "custom" and source.path == folder and "absolute" in source.description
    monkeypatch.setenv("MTKIT_DATA", str(clean_env / "not-there"))  # not needed, so not consulted
    assert find_data_dir(tasks=[spec]).path == folder
    gone = TaskSpec("cfimdb", "classification", str(folder / "cf-train.csv"), str(folder / "nope.csv"))
    with pytest.raises(FileNotFoundError, match="nope.csv do not exist"):
        find_data_dir(tasks=[gone])


def fake_checkout(folder):
    (folder / "mtkit").mkdir(parents=True)
    (folder / "mtkit" / "__init__.py").write_text("")
    (folder / "pyproject.toml").write_text("[project]\nname = 'mtkit'\n")
    (folder / "notebooks").mkdir()
    return folder


def test_inside_a_checkout_the_projects_data_is_found_from_any_subfolder(clean_env, monkeypatch):
    """`mtkit data fetch --dest ./data` from the root is found by a notebook whose working directory is notebooks/."""
    root = fake_checkout(clean_env / "project")
    data = fake_real(root / "data")
    monkeypatch.chdir(root / "notebooks")
    source = find_data_dir()
    assert source.path.resolve() == data.resolve() and source.kind == "real"
    assert f"{data.resolve()} (the project's data folder)" in source.description
    assert locate.project_root() == root.resolve()
    explicit = fake_real(clean_env / "explicit")
    assert find_data_dir(explicit).path == explicit  # an explicit folder still comes first
    monkeypatch.setenv("MTKIT_DATA", str(explicit))
    assert find_data_dir().path == explicit  # and then MTKIT_DATA


def test_inside_a_checkout_the_working_directorys_data_is_not_searched(clean_env, monkeypatch):
    root = fake_checkout(clean_env / "project")
    fake_real(root / "notebooks" / "data")  # relative to the working directory: not the project's data
    monkeypatch.chdir(root / "notebooks")
    source = find_data_dir()
    assert source.kind == "demo" and f"{root.resolve() / 'data'} (absent)" in source.description
    with pytest.raises(FileNotFoundError, match="looked at: .*project/data"):
        find_data_dir(allow_demo=False)


def test_outside_a_checkout_the_checkout_in_use_is_searched_after_dot_data(clean_env, monkeypatch):
    installed = fake_checkout(clean_env / "installed")
    data = fake_real(installed / "data")
    monkeypatch.setattr(locate, "installed_root", lambda: installed)
    source = find_data_dir()
    assert source.path == data and f"the mtkit checkout in use ({installed})" in source.description
    local = fake_real(clean_env / "work" / "data")
    assert find_data_dir().path.resolve() == local.resolve()


def test_demo_asked_for_by_name(clean_env, monkeypatch):
    root = fake_checkout(clean_env / "project")
    fake_real(root / "data")
    monkeypatch.chdir(root)
    assert find_data_dir("demo").kind == "demo"
    monkeypatch.setenv("MTKIT_DATA", "demo")  # what the nbval run sets, whatever data/ the checkout holds
    assert find_data_dir().kind == "demo"
    spec = TaskSpec("cfimdb", "classification", "ids-cfimdb-train.csv", "ids-cfimdb-dev.csv")
    with pytest.raises(FileNotFoundError, match="demo set only covers"):
        find_data_dir(tasks=[spec])
