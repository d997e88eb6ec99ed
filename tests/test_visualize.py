"""visualize_compression.py: the per-stream plot, the --analyze report and its clean errors."""
import h5py
import numpy as np
import pytest

from compressed_ad.config_schema import load_config
from compressed_ad.history_file import dataset_path, expected_markers, find_regions, infer_region_len, marker_problems
from compressed_ad.synthetic_histories import write_synthetic_file
from tests.helpers import TINY_STANDARD, assert_user_error, run_script


def visualize(tmp_path, workdir, *args):
    return run_script('visualize_compression.py', '--out_dir', tmp_path / 'figs', *args, *TINY_STANDARD, *workdir)


@pytest.fixture
def history(tmp_path, workdir):
    """The tiny synthetic file: 81 envs x 3 streams x 48 steps, regions of n_steps=8."""
    config = load_config(overrides=TINY_STANDARD + workdir)
    return write_synthetic_file(dataset_path(config), config)


def test_marker_arithmetic():
    m = np.tile(expected_markers(24, 8), (2, 1))
    assert list(m[0, :9]) == [1, 0, 0, 0, 0, 0, 0, 2, 1]
    stream, start, end = find_regions(m)
    assert list(stream) == [0, 0, 0, 1, 1, 1] and list(start) == [0, 8, 16] * 2 and set(end - start) == {7}
    assert infer_region_len(m[0]) == 8 and marker_problems(m, 8).shape == (0, 4)
    m[1, 10] = 2  # a stray </compress> splits region 1 of stream 1: regions 0..7 and 8..10, then 15 is unpaired
    assert marker_problems(m, 8).tolist() == [[1, 10, 0, 2]]
    stream, start, end = find_regions(m)
    assert (end - start + 1).tolist() == [8, 8, 8, 8, 3, 8]


def test_plot_writes_png(tmp_path, workdir, history):
    proc = visualize(tmp_path, workdir, '--env_idx', '5', '--stream', '2', '--max_steps', '40')
    assert proc.returncode == 0, proc.stderr
    png = tmp_path / 'figs' / 'compression_env5_stream2.png'
    assert png.stat().st_size > 20_000
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert str(png) in proc.stdout
    assert 'region lengths 8, 8, 8, 8, 8' in proc.stdout  # 40 steps = five whole regions of 8
    assert not list((tmp_path / 'figs').glob('*.tmp'))


@pytest.mark.slow  # several plots and analyses of a dataset
def test_plot_rejects_out_of_range_choices(tmp_path, workdir, history):
    assert_user_error(visualize(tmp_path, workdir, '--env_idx', '81'), '--env_idx 81', '0..80')
    assert_user_error(visualize(tmp_path, workdir, '--stream', '3'), '--stream 3', '3 streams')


def test_analyze_clean_file(tmp_path, workdir, history):
    proc = visualize(tmp_path, workdir, '--analyze')
    assert proc.returncode == 0, proc.stderr
    assert 'All markers on n_steps boundaries' in proc.stdout
    assert 'MISPLACED' not in proc.stdout
    assert "n_steps = 8 (from the file's stored config)" in proc.stdout
    assert '81 envs, 243 streams, 1458 complete regions; region lengths 8..8' in proc.stdout
    assert (tmp_path / 'figs' / 'compression_analysis.png').stat().st_size > 20_000


@pytest.mark.slow  # several plots and analyses of a dataset
def test_analyze_names_misplaced_markers(tmp_path, workdir, history):
    with h5py.File(history, 'r+') as f:
        f['3']['compress_markers'][10, 1] = 2  # a stray </compress> inside a region
        moved = f['7']['compress_markers']  # a <compress> one step late
        moved[16, 2], moved[17, 2] = 0, 1
    proc = visualize(tmp_path, workdir, '--analyze')
    assert proc.returncode == 0, proc.stderr  # a report, not a failure
    out = proc.stdout
    assert 'MISPLACED MARKERS: task 3 stream 1 step 10 (expected 0, found 2)' in out
    assert 'MISPLACED MARKERS: task 7 stream 2 step 16 (expected 1, found 0)' in out
    assert 'MISPLACED MARKERS: task 7 stream 2 step 17 (expected 0, found 1)' in out
    assert '3 misplaced or missing markers in 2 envs' in out
    assert 'All markers on n_steps boundaries' not in out
    # the plot of that stream flags it too
    proc = visualize(tmp_path, workdir, '--env_idx', '3', '--stream', '1', '--max_steps', '24')
    assert proc.returncode == 0, proc.stderr
    assert 'MISPLACED MARKERS: task 3 stream 1 step 10 (expected 0, found 2)' in proc.stdout
    assert (tmp_path / 'figs' / 'compression_env3_stream1.png').exists()


@pytest.mark.slow  # several plots and analyses of a dataset
def test_analyze_infers_n_steps_for_older_files(tmp_path, workdir):
    config = load_config(overrides=TINY_STANDARD + workdir)
    path = write_synthetic_file(tmp_path / 'old.hdf5', config, markers=True, attrs=False)
    proc = visualize(tmp_path, workdir, '--analyze', '--dataset', path)
    assert proc.returncode == 0, proc.stderr
    assert 'n_steps = 8 (from the spacing' in proc.stdout
    assert 'All markers on n_steps boundaries' in proc.stdout


@pytest.mark.parametrize('mode', [[], ['--analyze']])
def test_file_without_markers_is_refused(tmp_path, workdir, mode):
    config = load_config(overrides=TINY_STANDARD + workdir)
    path = write_synthetic_file(tmp_path / 'old.hdf5', config, markers=False, attrs=False)
    proc = visualize(tmp_path, workdir, '--dataset', path, *mode)
    assert_user_error(proc, 'No compression markers found', 'run collect.py again')
    assert proc.returncode == 2


def test_missing_dataset(tmp_path, workdir):
    assert_user_error(visualize(tmp_path, workdir), 'not found', 'collect.py')
    assert not (tmp_path / 'figs').exists()
