"""README.md and docs/*.md: every relative link and #anchor resolves, every page is linked from a short README,
the commands they show name files that exist, and the README's code layout names every part of the repository."""
import fnmatch
import os
import re

import pytest

from conftest import ROOT

README = ROOT / 'README.md'
DOCS = sorted((ROOT / 'docs').glob('*.md'))
PAGES = [README, *DOCS]
LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)|^\[[^\]]+\]:\s*(\S+)', re.M)
INLINE_CODE = re.compile(r'`([^`]+)`')
# A command that runs something: its option words, then what it runs (a file, or a module after -m).
COMMAND = re.compile(r'\b(?:python3?|torchrun|bash|sbatch)((?:\s+-\S+)*)\s+([\w./-]+)')
FOLDERS = 'bench|config|data|docs|feeder|scripts|tests|util'
REPO_PATH = re.compile(rf'(?<![\w./<>-])((?:{FOLDERS})/[\w./-]*\.(?:py|sh|yaml))\b')


def split_markdown(text):
    """(prose, code): the text outside fenced code blocks, and the text of the blocks (fence lines dropped).

    A block left open at the end (which would swallow the rest of the rendered page) is an AssertionError."""
    prose, code, fence = [], [], None
    for number, line in enumerate(text.splitlines(), 1):
        marker = re.match(r'\s*(```|~~~)', line)
        if marker and (fence is None or marker.group(1) == fence):
            fence, opened = (marker.group(1), number) if fence is None else (None, None)
            continue
        (prose if fence is None else code).append(line)
    assert fence is None, f'the code block opened on line {opened} is never closed'
    return '\n'.join(prose), '\n'.join(code)


def github_anchors(headings):
    """GitHub's ids of a page's headings, in order: markup dropped, lower case, punctuation other than '-' and '_'
    dropped, each space a '-'; a repeated id gets '-1', '-2', ... ."""
    seen, anchors = {}, []
    for heading in headings:
        text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading).replace('`', '').replace('*', '')
        anchor = re.sub(r'[^\w\- ]', '', text.strip().lower()).replace(' ', '-')
        anchors.append(anchor if anchor not in seen else f'{anchor}-{seen[anchor]}')
        seen[anchor] = seen.get(anchor, 0) + 1
    return anchors


def anchors_of(path):
    prose, _ = split_markdown(path.read_text())
    return set(github_anchors(re.findall(r'^#{1,6}\s+(.+?)\s*#*\s*$', prose, re.M)))


def links_of(path):
    """The targets of a page's Markdown links and images, outside code blocks and inline code."""
    prose, _ = split_markdown(path.read_text())
    prose = INLINE_CODE.sub('', prose)
    return [inline or reference for inline, reference in LINK.findall(prose)]


def code_of(path):
    """A page's code: its fenced blocks and inline code spans."""
    prose, code = split_markdown(path.read_text())
    return '\n'.join([code, *INLINE_CODE.findall(prose)])


def test_github_anchors():
    assert github_anchors(['Seeing pre-training learn: kNN and pictures', 'Contrastive tuning (STARS)',
                           '`--dist_eval` and TF32', 'Using a trained model', 'Using a trained model']) == [
        'seeing-pre-training-learn-knn-and-pictures', 'contrastive-tuning-stars', '--dist_eval-and-tf32',
        'using-a-trained-model', 'using-a-trained-model-1']


def test_split_markdown_leaves_code_out_of_the_prose():
    prose, code = split_markdown('# Title\n\n```bash\n# a comment, not a heading\nbash scripts/demo.sh\n```\ntext\n')
    assert prose == '# Title\n\ntext'
    assert code == '# a comment, not a heading\nbash scripts/demo.sh'
    with pytest.raises(AssertionError, match='line 3 is never closed'):
        split_markdown('# Title\n\n```bash\nbash scripts/demo.sh\n')


@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_and_anchors_resolve(page):
    broken = []
    for target in links_of(page):
        if re.match(r'[a-z][a-z0-9+.-]*:', target):  # https:, mailto:, ...: not checked here
            continue
        path, _, anchor = target.partition('#')
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f'{target}: no file {file}')
        elif anchor and (file.suffix != '.md' or anchor not in anchors_of(file)):
            broken.append(f'{target}: no heading with anchor #{anchor} in {file.name}')
    assert not broken, f'{page.name}: ' + '; '.join(broken)


def test_the_readme_links_pages_and_pictures():
    targets = links_of(README)
    assert 'docs/masking.png' in targets and '#what-mamp-is' in targets


def test_readme_is_short():
    lines = README.read_text().count('\n')
    assert lines <= 250, f'README.md has {lines} lines: move details to a page in docs/'


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / target.partition('#')[0]).resolve() for target in links_of(README)}
    assert DOCS
    assert [page.name for page in DOCS if page.resolve() not in linked] == []


def script_references(code):
    """Repository files named by a page's code: what python / torchrun / bash / sbatch run (a file, or with -m a
    module of one of the repository's packages), and paths under the repository's folders."""
    files = set(REPO_PATH.findall(code))
    for options, target in COMMAND.findall(code):
        if '-m' in options.split():
            package = target.split('.')[0]
            if (ROOT / package / '__init__.py').is_file():
                files.add(target.replace('.', '/') + '.py')
        elif target.endswith(('.py', '.sh')):
            files.add(target)
    return files


def test_script_references_are_found():
    code = ('python -m pip install -r requirements.txt && bash scripts/demo.sh\n'
            'torchrun --nproc_per_node=4 main_knn.py --config config/ntu60_xsub/linear.yaml\n'
            'python -m data.pku --phase 1 --raw-dir data/pku_raw/v1\noutput/x/config/y.yaml')
    assert script_references(code) == {'scripts/demo.sh', 'main_knn.py', 'config/ntu60_xsub/linear.yaml',
                                       'data/pku.py'}


@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_commands_name_files_that_exist(page):
    missing = sorted(f for f in script_references(code_of(page)) if not (ROOT / f).is_file())
    assert not missing, f'{page.name} names files that do not exist: {missing}'


def test_the_readme_commands_are_checked():
    assert {'scripts/demo.sh', 'scripts/real_pku.sh'} <= script_references(code_of(README))


def ignore_patterns():
    lines = (ROOT / '.gitignore').read_text().splitlines()
    return [line for line in (line.strip() for line in lines) if line and not line.startswith('#')]


def is_ignored(relative, patterns):
    """Whether a path (relative to the repository, '/'-separated) matches a .gitignore pattern."""
    for pattern in patterns:
        anchored = '/' in pattern.rstrip('/')
        if fnmatch.fnmatch(relative if anchored else relative.rsplit('/', 1)[-1], pattern.strip('/')):
            return True
    return False


def repository_names():
    """Names of the files and folders of the repository, hidden and .gitignore'd ones left out."""
    patterns, names = ignore_patterns(), set()
    for folder, dirs, files in os.walk(ROOT):
        base = os.path.relpath(folder, ROOT).replace(os.sep, '/')
        keep = [n for n in dirs + files
                if not n.startswith('.') and not is_ignored(n if base == '.' else f'{base}/{n}', patterns)]
        dirs[:] = [n for n in dirs if n in keep]
        names.update(keep)
    return names


def test_is_ignored_follows_gitignore_rules():
    patterns = ['__pycache__/', '/output*/', '/data/ntu/', '*.pyc']
    assert is_ignored('output_demo', patterns) and is_ignored('util/__pycache__', patterns)
    assert is_ignored('data/ntu', patterns) and is_ignored('tests/x.pyc', patterns)
    assert not is_ignored('data/output', patterns) and not is_ignored('data/ntu.py', patterns)


def test_code_layout_names_every_part_and_only_what_exists():
    text = README.read_text().split('## Code layout', 1)[1]
    _, layout = split_markdown(text.split('\n## ', 1)[0])
    named = set(re.findall(r'[\w.-]+\.(?:py|sh|txt)\b', layout))
    assert named and sorted(named - repository_names()) == []
    top = [p for p in ROOT.iterdir() if not p.name.startswith('.') and not is_ignored(p.name, ignore_patterns())]
    parts = [f'{p.name}/' if p.is_dir() else p.name for p in top if p.is_dir() or p.suffix == '.py']
    absent = [part for part in parts if not re.search(rf'(?<![\w/.]){re.escape(part)}(?![\w])', layout)]
    assert not absent, f'Code layout in README.md does not name {absent}'
