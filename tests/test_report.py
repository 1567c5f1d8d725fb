"""The report: its summary table, pages over runs that lack data, and the page in headless Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stochrelax import runs
from stochrelax.cli import main
from stochrelax.report import build_report, summary_table

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def report_page(small_run_dirs, fashion_mnist, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    return build_report(list(small_run_dirs.values()), out, fashion_mnist.limit(test_limit=300),
                        "stochrelax report ...", tsne_count=200)


def test_summary_table_has_a_row_per_run_and_single_draw_and_eot_for_stochastic_runs(small_run_dirs):
    table = summary_table([runs.load_run(path) for path in small_run_dirs.values()])
    assert [row[0] for row in table.rows] == [path.name for path in small_run_dirs.values()]
    fgsm = table.header.index("fgsm eps=0.1")
    by_name = {row[0]: row for row in table.rows}
    assert " / " in by_name[small_run_dirs["logistic"].name][fgsm]  # single draw / EOT
    assert " / " not in by_name[small_run_dirs["relu"].name][fgsm]
    assert by_name[small_run_dirs["adversarial"].name][3].startswith("fgsm_mixture")


def test_report_over_a_run_without_attack_table_says_which_command_is_missing(small_run_dirs, fashion_mnist,
                                                                            tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(small_run_dirs["relu"], bare)
    for name in (runs.ATTACKS_JSON, runs.ATTACKS_CSV):
        (bare / name).unlink()
    page = build_report([bare], tmp_path / "report", fashion_mnist.limit(test_limit=200), "stochrelax report bare",
                        tsne_count=100)
    text = page.read_text()
    assert f"stochrelax attack {bare}" in text
    assert "report.md" in [p.name for p in page.parent.iterdir()]
    assert f"stochrelax attack {bare}" in (page.parent / "report.md").read_text()


def test_report_lists_every_figure_and_the_command(report_page, small_run_dirs):
    text = report_page.read_text()
    assert "stochrelax report ..." in text
    for title in ("Fig. 4.1", "Fig. 4.2", "Fig. 4.3", "Fig. 4.4", "Fig. 4.5", "Figs. 5.3, 5.4", "Fig. 5.5",
                  "Fig. 5.6", "Fig. 5.7", "Fig. 5.8", "Fig. 5.9", "reliability diagram", "accuracy vs noise samples",
                  "activations and gradients during training"):
        assert title in text, title
    assert "<script" not in text and "http://" not in text and "https://" not in text


def test_report_command_writes_the_page(small_run_dirs, real_data_dir, tmp_path, capsys):
    status = main(["report", str(small_run_dirs["relu"]), "--out", str(tmp_path / "cli"), "--limit", "200",
                   "--tsne-count", "100",
                   "--data-dir", str(real_data_dir), "--no-progress"])
    assert (status, capsys.readouterr().err) == (0, "")
    assert (tmp_path / "cli" / "index.html").is_file()


def test_page_in_headless_chromium_loads_every_image_and_one_row_per_run(report_page, small_run_dirs, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM.is_file() and CHROMEDRIVER.is_file(), "install Debian's chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=1200,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(report_page.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        rows = driver.execute_script("return document.querySelectorAll('table.summary tbody tr').length")
        assert driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
    assert len(images) >= 14
    assert all(complete and width > 0 for _, complete, width in images), images
    assert rows == len(small_run_dirs)
    assert (tmp_path / "report.png").stat().st_size > 10_000


# --- results over seeds -------------------------------------------------------------------------

def test_results_join_seeds_of_one_configuration(small_run_dirs):
    import statistics

    from stochrelax.report import results_table

    loaded = [runs.load_run(path) for path in small_run_dirs.values()]
    table = results_table(loaded)
    assert len(table.rows) == len(small_run_dirs) - 1  # the two logistic seeds are one configuration
    logistic = next(row for row in table.rows if row[3] == "2")
    seeds = [run.summary["test_accuracy"] for run in loaded if run.path.name.startswith("logistic")]
    assert logistic[4] == f"{statistics.mean(seeds):.1%} ± {statistics.stdev(seeds):.1%}"
    eot_column = next(i for i, name in enumerate(table.header) if name.startswith("fgsm eps=0.1 EOT"))
    assert "±" in logistic[eot_column]


def test_results_command_writes_csv_and_markdown(small_run_dirs, tmp_path, capsys):
    root = next(iter(small_run_dirs.values())).parent
    assert main(["results", str(root), "--out", str(tmp_path)]) == 0
    assert "| configuration |" in capsys.readouterr().out
    csv_lines = (tmp_path / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("configuration,units,adversarial training,n,clean accuracy")
    assert len(csv_lines) == 1 + len(small_run_dirs) - 1


def test_results_without_runs_is_a_one_line_error(tmp_path, capsys):
    assert main(["results", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("stochrelax: error: no finished run")
