"""util.summary: the accuracy table read from log.txt files, and its one-line errors."""
import json

import pytest

from util import summary


def write_log(output_dir, accuracies, mean_class=None):
    """log.txt with one epoch per test top-1 in `accuracies`, each with the mean class accuracy of `mean_class`
    (default: 0.5 x top-1; an empty list: none, as in logs written before it was logged)."""
    output_dir.mkdir()
    mean_class = [acc / 2 for acc in accuracies] if mean_class is None else mean_class
    lines = [json.dumps({'train_loss': 1.0, 'test_acc1': acc, 'epoch': epoch,
                         **({'test_mean_class_acc': mean_class[epoch]} if mean_class else {})})
             for epoch, acc in enumerate(accuracies)]
    (output_dir / 'log.txt').write_text('\n'.join(lines) + '\n')
    return output_dir


def test_table_gives_the_last_epoch_first_then_the_best_on_test(tmp_path, capsys):
    a = write_log(tmp_path / 'a', [10.0, 62.5, 40.25], mean_class=[5.0, 30.0, 20.125])
    b = write_log(tmp_path / 'b', [33.3333, 33.3333], mean_class=[])
    summary.main([f'probe=after=MAMP={a}', f'random init={b}'])  # the last '=' separates the name
    header, row_a, row_b = capsys.readouterr().out.splitlines()
    assert header.split() == ['run', 'last', 'top-1', 'last', 'mean', 'class', 'best', 'on', 'test', '(epoch)',
                              'epochs']
    assert row_a.split() == ['probe=after=MAMP', '40.25', '20.12', '62.50', '(1)', '3']
    assert row_b.split() == ['random', 'init', '33.33', '-', '33.33', '(0)', '2']  # the first of equal bests
    assert len({len(header), len(row_a), len(row_b)}) == 1


def test_errors_name_the_file(tmp_path):
    with pytest.raises(SystemExit, match=f"error: {tmp_path / 'none' / 'log.txt'} not found"):
        summary.summarize(tmp_path / 'none')
    pretrain = tmp_path / 'pretrain'
    pretrain.mkdir()
    (pretrain / 'log.txt').write_text(json.dumps({'train_loss': 0.5, 'epoch': 0}) + '\n')
    with pytest.raises(SystemExit, match="no epoch with a test accuracy"):
        summary.summarize(pretrain)
    (pretrain / 'log.txt').write_text('{"epoch": 0, "test_acc1": 1.0}\n{"epoch": 1, "te\n')
    with pytest.raises(SystemExit, match="log.txt line 2: not a JSON line"):
        summary.summarize(pretrain)
    with pytest.raises(SystemExit):
        summary.main(['no-name-given'])


def test_mean_and_standard_deviation_of_the_best_over_repeats(tmp_path, capsys):
    runs = [write_log(tmp_path / f'seed{k}', accuracies) for k, accuracies in
            enumerate([[50.0, 60.0, 55.0], [62.0, 58.0], [40.0, 64.0]])]
    summary.main(['--mean', *(f'seed {k}={run}' for k, run in enumerate(runs))])
    *table, mean = capsys.readouterr().out.splitlines()
    assert len(table) == 4
    # last top-1 55, 58, 64: mean 59, sd sqrt((16 + 1 + 25) / 2) = 4.58; mean class half of it;
    # best top-1 60, 62, 64: mean 62, sample standard deviation sqrt(((-2)^2 + 0 + 2^2) / 2) = 2
    assert mean == ('over 3 run(s): last top-1 mean 59.00, standard deviation 4.58; last mean class accuracy mean '
                    '29.50, standard deviation 2.29; best on test top-1 mean 62.00, standard deviation 2.00')


def test_knn_rows_from_knn_json(tmp_path, capsys):
    a = write_log(tmp_path / 'a', [50.0])
    for name, acc1, mean_class in (('knn', 71.25, {'knn_mean_class_acc': 64.375}), ('knn_random', 40.5, {})):
        (tmp_path / name).mkdir()
        (tmp_path / name / 'knn.json').write_text(json.dumps({'knn_acc1': acc1, 'knn_acc5': 90.0, 'knn_k': 20,
                                                              'knn_t': 0.07, **mean_class}))
    summary.main([f'probe={a}', '--knn', f"MAMP encoder={tmp_path / 'knn'}", f"random={tmp_path / 'knn_random'}"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == '' and lines[3].split() == ['kNN', 'of', 'the', 'frozen', 'encoder', 'top-1', 'top-5',
                                                   'mean', 'class', 'k,', 't']
    assert lines[4].split() == ['MAMP', 'encoder', '71.25', '90.00', '64.38', '20,', '0.07']
    assert lines[5].split() == ['random', '40.50', '90.00', '-', '20,', '0.07']  # a knn.json without it
    with pytest.raises(SystemExit, match="knn.json not found"):
        summary.main([f'probe={a}', '--knn', f'x={a}'])


def test_runs_under_one_name_are_pooled(tmp_path, capsys):
    seeds = [write_log(tmp_path / f'seed{i}', accuracies) for i, accuracies in
             enumerate([[20.0, 50.0, 40.0], [30.0, 45.0], [10.0, 70.0]])]
    single = write_log(tmp_path / 'single', [12.5])
    summary.main([f'probe={seeds[0]}', f'random={single}', f'probe={seeds[1]}', f'probe={seeds[2]}'])
    header, probe, random = capsys.readouterr().out.splitlines()
    assert header.split() == ['run', 'runs', 'last', 'top-1', 'mean', '+-', 'sd', '(min-max)', 'last', 'mean',
                              'class', '+-', 'sd', 'best', 'on', 'test', 'mean']
    # last top-1 40, 45, 70: mean 51.67, sample sd sqrt(((40-51.67)^2 + (45-51.67)^2 + (70-51.67)^2) / 2) = 16.07;
    # the mean class accuracy half of it; best top-1 50, 45, 70: mean 55
    assert probe.split() == ['probe', '3', '51.67', '+-', '16.07', '(40.00-70.00)', '25.83', '+-', '8.04', '55.00']
    assert random.split() == ['random', '1', '12.50', '+-', '0.00', '(12.50-12.50)', '6.25', '+-', '0.00', '12.50']
    assert len({len(header), len(probe), len(random)}) == 1
    summary.main([f'probe={tmp_path / "seed*"}', f'random={single}'])  # a wildcard pools its matches
    assert capsys.readouterr().out.splitlines()[1:] == [probe, random]
    with pytest.raises(SystemExit, match="no folder matches .*nothing"):
        summary.main([f'probe={tmp_path / "nothing*"}'])


def test_knn_folder_gives_its_top1(tmp_path, capsys):
    knn = tmp_path / 'knn'
    knn.mkdir()
    (knn / 'knn.json').write_text(json.dumps({'knn_acc1': 71.25, 'knn_acc5': 90.0, 'knn_k': 20}) + '\n')
    probe = write_log(tmp_path / 'probe', [50.0, 60.0])
    summary.main([f'kNN={knn}', f'probe={probe}'])
    _, row_knn, row_probe = capsys.readouterr().out.splitlines()
    assert row_knn.split() == ['kNN', '71.25', '-', '-', '-']  # one result, no epochs: no best on test
    assert row_probe.split() == ['probe', '60.00', '30.00', '60.00', '(1)', '2']
    summary.main([f'kNN={knn}', f'kNN={knn}'])
    assert capsys.readouterr().out.splitlines()[1].split() == ['kNN', '2', '71.25', '+-', '0.00', '(71.25-71.25)',
                                                                 '-', '-']
    (knn / 'knn.json').write_text('{"knn_acc5": 90.0}\n')
    with pytest.raises(SystemExit, match="knn.json: expected the JSON object of main_knn.py with knn_acc1"):
        summary.summarize(knn)


def test_a_figure_of_a_knn_or_fewshot_folder_is_chosen_with_a_hash(tmp_path, capsys):
    """knn.json of `main_knn.py --k 1 20` and fewshot.json of main_fewshot.py: OUTPUT_DIR#K and OUTPUT_DIR#S pick
    the k or the shots, the first by default; a figure the file does not have is one line naming the file."""
    for seed, (k1, k20, shot1, shot5) in enumerate([(60.0, 55.0, 40.0, 70.0), (64.0, 57.0, 44.0, 74.0)]):
        knn, fewshot = tmp_path / f'{seed}' / 'knn', tmp_path / f'{seed}' / 'fewshot'
        knn.mkdir(parents=True)
        fewshot.mkdir()
        (knn / 'knn.json').write_text(json.dumps({
            'knn_acc1': k1, 'knn_acc5': 90.0, 'knn_mean_class_acc': k1 / 2, 'knn_k': 1, 'knn_t': 0.07,
            'by_k': {'1': {'acc1': k1, 'acc5': 90.0, 'mean_class_acc': k1 / 2},
                     '20': {'acc1': k20, 'acc5': 91.0, 'mean_class_acc': k20 / 2}}}))
        (fewshot / 'fewshot.json').write_text(json.dumps({
            'ways': 4, 'by_shots': {'1': {'acc': shot1, 'ci95': 1.0}, '5': {'acc': shot5, 'ci95': 0.5}}}))
    summary.main([f"k=1={tmp_path / '0' / 'knn'}#1", f"k=20={tmp_path / '0' / 'knn'}#20",
                  f"first={tmp_path / '0' / 'knn'}", f"1-shot={tmp_path / '0' / 'fewshot'}",
                  f"5-shot={tmp_path / '0' / 'fewshot'}#5"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == [['k=1', '60.00', '30.00', '-', '-'], ['k=20', '55.00', '27.50', '-', '-'],
                    ['first', '60.00', '30.00', '-', '-'], ['1-shot', '40.00', '-', '-', '-'],
                    ['5-shot', '70.00', '-', '-', '-']]
    summary.main([f"k=20={tmp_path / '*' / 'knn'}#20", f"5-shot={tmp_path / '*' / 'fewshot'}#5"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    # k = 20: 55 and 57, mean 56, sd sqrt(2) = 1.41; 5-shot: 70 and 74, mean 72, sd 2.83; no mean class for shots
    assert rows == [['k=20', '2', '56.00', '+-', '1.41', '(55.00-57.00)', '28.00', '+-', '0.71', '-'],
                    ['5-shot', '2', '72.00', '+-', '2.83', '(70.00-74.00)', '-', '-']]
    with pytest.raises(SystemExit, match=r"fewshot.json: no shots 10 \(it has 1, 5\)"):
        summary.main([f"x={tmp_path / '0' / 'fewshot'}#10"])
    (tmp_path / '0' / 'fewshot' / 'fewshot.json').write_text('{"ways": 4}')
    with pytest.raises(SystemExit, match="fewshot.json: expected the JSON object of main_fewshot.py with by_shots"):
        summary.summarize(tmp_path / '0' / 'fewshot')


def test_a_detection_folder_gives_its_map_not_its_log(tmp_path, capsys):
    """detection.json of main_detect.py: mAP_a at IoU 0.5 by default, OUTPUT_DIR#mAP_v@0.3 another; its log.txt
    (epochs without a test accuracy) is not read; a figure it lacks or a malformed file is one line naming it."""
    run = tmp_path / 'detect'
    run.mkdir()
    (run / 'log.txt').write_text(json.dumps({'epoch': 0, 'train_loss': 2.0}) + '\n')
    (run / 'detection.json').write_text(json.dumps({'mAP_a': {'0.1': 9.5, '0.5': 4.25},
                                                    'mAP_v': {'0.1': 30.0, '0.3': 21.0}, 'frame_acc': 66.0}))
    summary.main([f'a={run}', f'v={run}#mAP_v@0.3'])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == [['a', '4.25', '-', '-', '-'], ['v', '21.00', '-', '-', '-']]
    with pytest.raises(SystemExit, match=r"detection.json: no figure mAP_v@0.7 \(it has mAP_a@0.1, mAP_a@0.5, "
                                         r"mAP_v@0.1, mAP_v@0.3\)"):
        summary.main([f'x={run}#mAP_v@0.7'])
    for damaged in ({'mAP_a': 4.0, 'mAP_v': {}}, {'mAP_a': {'0.5': 'high'}, 'mAP_v': {}}):
        (run / 'detection.json').write_text(json.dumps(damaged))
        with pytest.raises(SystemExit, match="detection.json: expected mAP_a and mAP_v as"):
            summary.summarize(run)
    (run / 'detection.json').write_text('{"frame_acc": 1}')
    with pytest.raises(SystemExit, match="detection.json: expected the JSON object of main_detect.py with mAP_a"):
        summary.summarize(run)
