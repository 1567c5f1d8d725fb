"""The report: its summary table, the verdicts over a study, pages over runs that lack data, and the page
in headless Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stochrelax.analysis.claims import load_claims
from stochrelax.cli import main
from stochrelax.report.page import VERDICT_BACKGROUNDS, build_report, certified_by_configuration, summary_table
from stochrelax.rundir import layout as runs
from stochrelax.study.reproduce import analyse_study
from tests.synthetic_runs import thesis_like_study

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SECTIONS = ["verdicts", "robustness", "results", "summary", "figures", "runs", "regenerate"]  # ids, in page order


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A synthetic study of every thesis configuration, 2 seeds, analysed by `stochrelax results`."""
    root = thesis_like_study(tmp_path_factory.mktemp("study"), seeds=2)
    analyse_study(root)
    return root


@pytest.fixture(scope="module")
def report_page(small_run_dirs, study, fashion_mnist, tmp_path_factory) -> Path:
    """The report over the small runs, opening with the verdicts and the results over seeds of the study."""
    out = tmp_path_factory.mktemp("report")
    return build_report(list(small_run_dirs.values()), out, fashion_mnist.limit(test_limit=300),
                        "stochrelax report ...", tsne_count=200, study_root=study)


def test_summary_table_has_a_row_per_run_and_single_draw_and_eot_for_stochastic_runs(small_run_dirs):
    table = summary_table([runs.load_run(path) for path in small_run_dirs.values()])
    assert [row[0] for row in table.rows] == [path.name for path in small_run_dirs.values()]
    fgsm = table.header.index("fgsm eps=0.1 on 100 images")
    by_name = {row[0]: row for row in table.rows}
    assert " / " in by_name[small_run_dirs["logistic"].name][fgsm]  # single draw / EOT
    assert " / " not in by_name[small_run_dirs["relu"].name][fgsm]
    assert by_name[small_run_dirs["adversarial"].name][3].startswith("fgsm_mixture")


def test_summary_table_says_on_how_many_images_each_accuracy_was_measured(small_run_dirs):
    relu = runs.load_run(small_run_dirs["relu"])
    table = summary_table([relu])
    assert table.header[5:8] == ["clean accuracy on 300 images", "clean accuracy on the 100 attacked images",
                                 "fgsm eps=0.1 on 100 images"]  # the runs test on 300 images, attacks use 100
    attacked = runs.read_attack_table(relu.path)["clean_accuracy"]
    assert table.rows[0][5:7] == [f"{relu.summary['test_accuracy']:.1%}", f"{attacked:.1%}"]


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
    assert "Verdicts" not in text  # no study given
    assert [f'href="#{anchor}"' in text for anchor in SECTIONS] == [False] * 3 + [True] * 4


def test_report_over_a_study_opens_with_the_verdicts_their_forest_plot_and_robust_accuracy(report_page, study):
    text, markdown = report_page.read_text(), (report_page.parent / "report.md").read_text()
    for page, heading in ((text, "<h2>{}</h2>"), (markdown, "## {}")):
        positions = [page.index(heading.format(name)) for name in ("Verdicts", "Results over seeds", "Summary")]
        assert positions == sorted(positions)
        for claim in load_claims():
            assert claim.id in page
    sections = [text.index(f'<section id="{anchor}">') for anchor in SECTIONS]
    assert sections == sorted(sections)
    order = [text.index(marker) for marker in ('<figure id="forest_plot">', '<table class="verdicts">',
                                               '<figure id="robust_accuracy_vs_eps">',
                                               'id="robustness_and_certificates"', '<table class="results">')]
    assert order == sorted(order)
    assert markdown.splitlines()[2] == "Study not made by `stochrelax sweep`: every claim judged."
    assert f"From {study}." in markdown
    assert (study / "verdicts.md").read_text().split("\n\n")[2] in markdown  # the table results wrote, read back


def test_report_over_a_study_that_was_never_analysed_says_which_command_to_run(small_run_dirs, fashion_mnist,
                                                                             tmp_path):
    with pytest.raises(runs.RunDirError, match=f"results.csv is missing: run `stochrelax results {tmp_path}` first"):
        (tmp_path / "verdicts.csv").write_text("")
        build_report([small_run_dirs["relu"]], tmp_path / "report", fashion_mnist.limit(test_limit=100), "c",
                     study_root=tmp_path)


def test_report_lists_every_figure_and_the_command(report_page, small_run_dirs):
    text = report_page.read_text()
    assert "stochrelax report ..." in text
    for title in ("Fig. 4.1", "Fig. 4.2", "Fig. 4.3", "Fig. 4.4", "Fig. 4.5", "Figs. 5.3, 5.4", "Fig. 5.5",
                  "Fig. 5.6", "Fig. 5.7", "Fig. 5.8", "Fig. 5.9", "Reliability diagram", "Accuracy vs noise samples",
                  "Block outputs during training", "Weight gradients during training"):
        assert title in text, title
    for path in small_run_dirs.values():  # every run a section of its own, listed in the contents
        assert f'<section id="run-{path.name}" class="run">' in text and f'href="#run-{path.name}"' in text
    assert "<script" not in text and "http://" not in text and "https://" not in text


def test_report_command_writes_the_page(small_run_dirs, real_data_dir, tmp_path, capsys):
    status = main(["report", str(small_run_dirs["relu"]), "--out", str(tmp_path / "cli"), "--limit", "200",
                   "--tsne-count", "100",
                   "--data-dir", str(real_data_dir), "--no-progress"])
    assert (status, capsys.readouterr().err) == (0, "")
    assert (tmp_path / "cli" / "index.html").is_file()


def _chromium(profile: Path, width: int):
    """Headless Chromium with a window ``width`` pixels wide."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM.is_file() and CHROMEDRIVER.is_file(), "install Debian's chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                 f"--window-size={width},1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def test_page_in_headless_chromium_opens_with_the_forest_plot_and_the_verdicts_and_loads_every_image(
        report_page, small_run_dirs, tmp_path):
    driver = _chromium(tmp_path / "profile", 1400)
    try:
        driver.get(report_page.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        rows = driver.execute_script("return ['summary', 'verdicts', 'results'].map("
                                     "c => document.querySelectorAll(`table.${c} tbody tr`).length)")
        first_screen = driver.execute_script(
            "const top = e => e.getBoundingClientRect().top;"
            "return [top(document.querySelector('#forest_plot img')), top(document.querySelector('table.verdicts')),"
            " window.innerHeight]")
        assert driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
    assert len(images) >= 16
    assert all(complete and width > 0 for _, complete, width in images), images
    assert rows == [len(small_run_dirs), len(load_claims()), 33]  # every configuration of the thesis study
    forest, verdicts, height = first_screen
    assert forest < verdicts < height  # the forest plot, then the verdict table, on the first screen
    assert (tmp_path / "report.png").stat().st_size > 10_000


def _rgb(colour: str) -> str:
    """``#rrggbb`` as a computed style writes it."""
    return "rgb({}, {}, {})".format(*(int(colour[index:index + 2], 16) for index in (1, 3, 5)))


@pytest.mark.parametrize("width", [1400, 800])
def test_page_in_headless_chromium_fits_the_window_its_contents_lead_to_every_section_and_verdicts_are_coloured(
        report_page, small_run_dirs, tmp_path, width):
    from selenium.webdriver.common.by import By

    driver = _chromium(tmp_path / "profile", width)
    try:
        driver.get(report_page.as_uri())
        page_width, window_width = driver.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]")
        assert driver.save_screenshot(str(tmp_path / f"report-{width}.png"))
        targets = driver.execute_script(
            "return Array.from(document.querySelectorAll('nav.contents a')).map(a => a.getAttribute('href'))")
        arrivals = {}
        for target in targets:  # follow every link of the contents from the top of the page
            driver.execute_script("window.scrollTo(0, 0)")
            driver.find_element(By.CSS_SELECTOR, f'nav.contents a[href="{target}"]').click()
            arrivals[target] = driver.execute_script(
                "const section = document.getElementById(arguments[0]);"
                "return section && [Math.round(section.getBoundingClientRect().top), location.hash,"
                " window.scrollY + window.innerHeight >= document.documentElement.scrollHeight - 1,"
                " window.innerHeight]", target[1:])
        verdicts = driver.execute_script(
            "return Array.from(document.querySelectorAll('table.verdicts tbody tr td:nth-last-child(-n+2)'))"
            ".map(cell => [cell.textContent.split(' — ')[0], getComputedStyle(cell).backgroundColor])")
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        printed_width, printed_contents = driver.execute_script(
            "const contents = document.querySelector('nav.contents');"
            "return [document.documentElement.scrollWidth, contents && getComputedStyle(contents).position]")
    finally:
        driver.quit()
    assert page_width <= window_width, "the page scrolls sideways: a table or figure is wider than the window"
    assert [target for target in targets if target[1:] in SECTIONS] == [f"#{anchor}" for anchor in SECTIONS]
    assert len(targets) == len(SECTIONS) + len(small_run_dirs)  # and one link per run
    for target, arrival in arrivals.items():
        assert arrival is not None, f"the contents link to {target}, which the page lacks"
        top, hash_, at_bottom, height = arrival
        assert hash_ == target and 0 <= top < height and (top <= 1 or at_bottom), (target, arrival)
    assert {state for state, _ in verdicts} - set(VERDICT_BACKGROUNDS) == set()
    assert [colour for _, colour in verdicts] == [_rgb(VERDICT_BACKGROUNDS[state]) for state, _ in verdicts]
    assert len({state for state, _ in verdicts}) >= 2  # verdicts and worst-case verdicts (not measured here)
    assert printed_width <= window_width and printed_contents == "static"


def test_a_damaged_run_is_left_out_with_its_reason_and_the_rest_is_rendered(small_run_dirs, fashion_mnist, tmp_path):
    good, damaged = tmp_path / "good", tmp_path / "damaged"
    shutil.copytree(small_run_dirs["relu"], good)
    shutil.copytree(small_run_dirs["logistic"], damaged)
    (damaged / runs.SUMMARY_FILE).write_text("{not json")
    page = build_report([good, damaged], tmp_path / "report", fashion_mnist.limit(test_limit=100), "c",
                        tsne_count=50)
    markdown = (page.parent / "report.md").read_text()
    assert f"| {good.name} |" in markdown and f"| {damaged.name} |" not in markdown
    assert f"left out: {damaged / runs.SUMMARY_FILE} is damaged (" in markdown


def test_a_report_of_damaged_runs_only_is_a_one_line_error(small_run_dirs, real_data_dir, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(small_run_dirs["relu"], damaged)
    (damaged / runs.WEIGHTS_FILE).write_bytes(b"")
    status = main(["report", str(damaged), "--out", str(tmp_path / "report"), "--data-dir", str(real_data_dir),
                   "--no-progress"])
    assert status == 2 and not (tmp_path / "report" / "index.html").exists()


def test_certified_accuracy_is_gathered_per_configuration_over_its_seeds(tmp_path):
    for name, accuracy in (("smoothed-seed0", 0.5), ("smoothed-seed1", 0.7), ("other-seed0", 0.2)):
        (tmp_path / name).mkdir()
        (tmp_path / name / runs.CERTIFY_JSON).write_text(json.dumps(
            {"sigma": 0.25, "certified_accuracy": [{"radius": 0.0, "accuracy": accuracy + 0.1},
                                                   {"radius": 0.5, "accuracy": accuracy}]}))
    (tmp_path / "uncertified-seed0").mkdir()
    assert certified_by_configuration(tmp_path) == {
        "other": [{0.0: pytest.approx(0.3), 0.5: 0.2}],
        "smoothed": [{0.0: pytest.approx(0.6), 0.5: 0.5}, {0.0: pytest.approx(0.8), 0.5: 0.7}]}
