"""Loading site profiles: shipped profiles, every kind of error, and round trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpcrun.errors import ConfigError
from hpcrun.profiles.load import (
    ProfileError,
    key_lines,
    load_profile,
    loads_profile,
    profile_from_dict,
    profile_to_dict,
)
from hpcrun.profiles.model import BindSpec, EnvSpec, Library, Profile
from hpcrun.profiles.write import dump_profile, toml_string

from .conftest import SITE_PROFILES

SHIPPED = sorted(SITE_PROFILES.glob("*.toml"))

# bind-model.md section 5: the Zeus module's SINGULARITY_BINDPATH, in order.
ZEUS_MODULE_BINDPATH = (
    "/astro,/group,/scratch,/pawsey,/etc/dat.conf,/etc/libibverbs.d,"
    "/usr/lib64/libdaplofa.so.2,/usr/lib64/libdaplofa.so.2.0.0,/usr/lib64/libdat2.so.2,"
    "/usr/lib64/libdat2.so.2.0.0,/usr/lib64/libibverbs,/usr/lib64/libibverbs.so,"
    "/usr/lib64/libibverbs.so.1,/usr/lib64/libibverbs.so.1.1.14,/usr/lib64/libmlx5.so,"
    "/usr/lib64/libmlx5.so.1,/usr/lib64/libmlx5.so.1.1.14,/usr/lib64/libnl-3.so.200,"
    "/usr/lib64/libnl-3.so.200.18.0,/usr/lib64/libnl-cli-3.so.200,"
    "/usr/lib64/libnl-cli-3.so.200.18.0,/usr/lib64/libnl-genl-3.so.200,"
    "/usr/lib64/libnl-genl-3.so.200.18.0,/usr/lib64/libnl-idiag-3.so.200,"
    "/usr/lib64/libnl-idiag-3.so.200.18.0,/usr/lib64/libnl-nf-3.so.200,"
    "/usr/lib64/libnl-nf-3.so.200.18.0,/usr/lib64/libnl-route-3.so.200,"
    "/usr/lib64/libnl-route-3.so.200.18.0,/usr/lib64/librdmacm.so,/usr/lib64/librdmacm.so.1,"
    "/usr/lib64/librdmacm.so.1.0.14"
).split(",")

MINIMAL = 'schema = 1\nname = "t"\n'


def error_of(text: str) -> ProfileError:
    with pytest.raises(ProfileError) as caught:
        loads_profile(text, "site.toml")
    assert isinstance(caught.value, ConfigError)
    return caught.value


# --- shipped profiles ------------------------------------------------------------------


def test_the_five_profiles_are_shipped() -> None:
    assert {p.stem for p in SHIPPED} >= {"zeus", "topaz", "setonix", "debian-mpich",
                                          "debian-openmpi"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_profile_loads_and_every_entry_has_a_reason(path: Path) -> None:
    profile = load_profile(path)
    assert profile.name == path.stem
    assert profile.source == str(path)
    assert profile.description
    entries: List[Any] = [*profile.libraries, *profile.binds, *profile.env,
                          *(d for _, d in profile.launchers)]
    if profile.mpi is not None:
        entries.append(profile.mpi)
    for table in (profile.runtime, profile.gpu, profile.container, profile.wireup):
        if table != type(table)():
            entries.append(table)
    missing = [entry for entry in entries if not entry.reason.strip()]
    assert missing == []


def test_zeus_holds_exactly_the_module_bind_list_in_order() -> None:
    zeus = load_profile(SITE_PROFILES / "zeus.toml")
    files = [lib.path for lib in zeus.libraries]
    binds = [bind.source for bind in zeus.binds]
    # Files of /usr/lib64 are [[libraries]] in module order; everything else is a bind.
    assert files == [p for p in ZEUS_MODULE_BINDPATH if p in files]
    assert sorted(files + binds) == sorted(ZEUS_MODULE_BINDPATH)
    assert all(p.startswith("/usr/lib64/lib") for p in files)
    assert [b for b in binds if not b.startswith("/usr/lib64")] == ZEUS_MODULE_BINDPATH[:6]
    assert {lib.kind for lib in zeus.libraries} <= {"provider", "dependency"}
    intel = "/pawsey/intel/17.0.5/compilers_and_libraries/linux/mpi/intel64/lib"
    assert zeus.mpi is not None and zeus.mpi.library_dirs == (intel,)
    assert zeus.container.library_path == (intel,)
    assert zeus.mpi.sonames == ("libmpi.so.12",)
    assert zeus.mpi.fortran == ("libmpifort.so.12",) and zeus.mpi.cxx == ("libmpicxx.so.12",)
    srun = zeus.launcher_defaults("srun")
    assert srun is not None and srun.options == ("--mpi=pmi2",)


def test_topaz_is_zeus_with_nvidia_and_no_forced_gres() -> None:
    zeus = load_profile(SITE_PROFILES / "zeus.toml")
    topaz = load_profile(SITE_PROFILES / "topaz.toml")
    assert topaz.gpu.vendor == "nvidia"
    assert topaz.libraries == zeus.libraries and topaz.binds == zeus.binds
    assert topaz.mpi == zeus.mpi
    assert not any("gres" in o for _, d in topaz.launchers for o in d.options)


def test_setonix_gpu_settings_apply_only_with_a_gpu() -> None:
    setonix = load_profile(SITE_PROFILES / "setonix.toml")
    assert setonix.gpu.vendor == "rocm"
    assert [p.rsplit("/", 1)[1] for p in setonix.gpu.libraries] == ["libmpi_gtl_hsa.so.0"]
    (variable,) = [e for e in setonix.env if e.name == "MPICH_GPU_SUPPORT_ENABLED"]
    assert (variable.value, variable.when, variable.scope) == ("1", "gpu", "both")
    assert setonix.container.preload == ("/opt/xpmem/lib64/libxpmem.so.0",)
    assert not any("gcc-libs" in d for d in setonix.mpi.library_dirs)  # type: ignore[union-attr]


# --- errors ------------------------------------------------------------------------------


def test_malformed_toml_names_file_line_and_column() -> None:
    error = error_of(MINIMAL + "[mpi]\nfamily = mpich\n")
    assert error.message.startswith("site.toml:4:")
    assert "invalid TOML" in error.message
    assert error.line == 4


def test_unknown_top_level_key_is_suggested() -> None:
    error = error_of(MINIMAL + 'descripton = "x"\n')
    assert error.message.startswith("site.toml:3: descripton: unknown key")
    assert "did you mean 'description'?" in error.hint
    assert error.key == "descripton"


def test_unknown_key_in_an_array_of_tables_names_its_index_and_line() -> None:
    text = MINIMAL + '[[binds]]\nsource = "/a"\n\n[[binds]]\nsource = "/b"\nreadonly = true\n'
    error = error_of(text)
    assert error.key == "binds[1].readonly"
    assert error.line == 8
    assert "did you mean 'read_only'?" in error.hint


def test_unknown_key_without_a_close_name_lists_the_valid_ones() -> None:
    error = error_of(MINIMAL + "[gpu]\nzzzz = 1\n")
    assert "valid keys here: vendor, libraries, reason" in error.hint


def test_wrong_type_names_the_key_and_the_expected_type() -> None:
    error = error_of(MINIMAL + '[mpi]\nsonames = "libmpi.so.12"\n')
    assert error.message == ("site.toml:4: mpi.sonames: expected an array of strings, "
                             "got a string")
    assert "sonames = " in error.hint
    error = error_of(MINIMAL + '[[binds]]\nsource = "/a"\nread_only = "yes"\n')
    assert "binds[0].read_only: expected true or false, got a string" in error.message
    error = error_of(MINIMAL + 'mpi = ["x"]\n')
    assert "mpi: expected a table, got an array" in error.message
    error = error_of(MINIMAL + 'binds = {source = "/a"}\n')
    assert "binds: expected an array of tables" in error.message


def test_invalid_choice_is_suggested_with_the_allowed_values() -> None:
    error = error_of(MINIMAL + '[mpi]\nfamily = "openmp"\n')
    assert error.key == "mpi.family" and error.line == 4
    assert "did you mean 'openmpi'?" in error.hint
    assert "'mpich'" in error.hint


def test_unknown_launcher_name_is_an_error() -> None:
    error = error_of(MINIMAL + '[launchers.sbatch]\noptions = ["--x"]\n')
    assert error.key == "launchers.sbatch"
    assert "srun" in error.hint


def test_missing_required_key_in_an_entry() -> None:
    error = error_of(MINIMAL + '[[binds]]\nread_only = true\n')
    assert "missing required key 'source' in [binds[0]]" in error.message
    assert error.line == 3


@pytest.mark.parametrize("text, expected", [
    ('name = "t"\n', "missing 'schema = 1'"),
    ('schema = 2\nname = "t"\n', "unsupported profile format version 2"),
    ('schema = "1"\nname = "t"\n', "unsupported profile format version '1'"),
    ('schema = true\nname = "t"\n', "unsupported profile format version True"),
])
def test_schema_must_be_one(text: str, expected: str) -> None:
    assert expected in error_of(text).message


def test_internal_source_field_is_not_a_key() -> None:
    assert error_of(MINIMAL + 'source = "/x"\n').key == "source"


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(tmp_path / "absent.toml")
    with pytest.raises(ProfileError, match="is a directory"):
        load_profile(tmp_path)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(MINIMAL.encode() + b'description = "caf\xe9"\n')
    with pytest.raises(ProfileError, match=r"latin.toml:3: not UTF-8"):
        load_profile(latin)


def test_key_lines_follow_tables_and_arrays_of_tables() -> None:
    text = ('schema = 1\n[mpi]\nfamily = "mpich"\n[[binds]]\nsource = "/a"\n[[binds]]\n'
            'source = "/b"\n[launchers."srun"]\noptions = []\n')
    lines = key_lines(text)
    assert lines["mpi.family"] == 3
    assert lines["binds[1].source"] == 7
    assert lines["launchers.srun.options"] == 9


# --- conversion and round trips ------------------------------------------------------------


def test_defaults_and_types_of_a_minimal_profile() -> None:
    profile = loads_profile(MINIMAL)
    assert profile == Profile(schema=1, name="t")
    assert profile.mpi is None and profile.libraries == () and profile.launchers == ()


def test_launchers_become_name_value_pairs() -> None:
    profile = loads_profile(MINIMAL + '[launchers.srun]\noptions = ["--mpi=pmix"]\n'
                            '[launchers.mpirun]\noptions = ["-x", "FOO"]\n')
    assert [name for name, _ in profile.launchers] == ["srun", "mpirun"]
    assert profile.launcher_defaults("mpirun").options == ("-x", "FOO")  # type: ignore[union-attr]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_profiles_round_trip_through_dict_json_and_toml(path: Path) -> None:
    profile = load_profile(path)
    data = profile_to_dict(profile)
    again = json.loads(json.dumps(data))
    del again["source"]
    assert profile_from_dict(again, str(path)) == profile
    assert loads_profile(dump_profile(profile), str(path)) == profile


texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=150, deadline=None)
@given(reason=texts, value=texts, source=texts)
def test_writer_escapes_any_text(reason: str, value: str, source: str) -> None:
    profile = Profile(schema=1, name="t", description=reason,
                      libraries=(Library(path="/" + source, reason=reason),),
                      binds=(BindSpec(source="/" + source, reason=value),),
                      env=(EnvSpec(name="X", value=value),))
    assert loads_profile(dump_profile(profile, {"binds[0]": [reason]}, [value])) == profile
    assert loads_profile(f"schema = 1\nname = {toml_string(value)}\n").name == value


# --- robustness: bad input only ever raises ProfileError ----------------------------------

toml_scalars = st.one_of(st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False),
                         st.sampled_from(["mpich", "srun", "/x", "", "auto"]), texts)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["path", "source", "options", "name", "family",
                                         "srun", "kind", "x"]), inner, max_size=3)),
    max_leaves=8)
top_keys = st.sampled_from(["schema", "name", "description", "runtime", "mpi", "libraries",
                            "binds", "env", "gpu", "launchers", "container", "threads",
                            "wireup", "other"])


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(top_keys, toml_values, max_size=6))
def test_any_parsed_toml_gives_a_profile_or_a_profile_error(data: dict) -> None:
    try:
        profile = profile_from_dict({"schema": 1, "name": "t", **data})
    except ProfileError as error:
        assert error.message
    else:
        assert isinstance(profile, Profile)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list('[]{}="\'.,\n #abc1-_')), max_size=60))
def test_any_text_gives_a_profile_or_a_profile_error(text: str) -> None:
    try:
        loads_profile("schema = 1\n" + text)
    except ProfileError as error:
        assert error.message.startswith("<string>")
