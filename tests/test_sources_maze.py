"""The maze source: generated mazes have a unique shortest path of at least min_path,
are deterministic from the seed, and a Maze-Hard CSV reads with errors by file and line."""

from __future__ import annotations

import numpy as np
import pytest

from refiner.data.tokenizers import NUM_SPECIAL
from refiner.tasks.problems import TaskFileError
from refiner.tasks.sources import load_source, load_tasks
from refiner.tasks.sources.maze import (
    CHARS,
    GOAL,
    OPEN,
    PATH,
    START,
    WALL,
    generate,
    shortest_path_count,
    solve_maze,
)


def grids(table, column, side):
    return [
        np.array(ids).reshape(side, side) - NUM_SPECIAL for ids in table.column(column).to_pylist()
    ]


def all_shortest_paths(grid):
    """Every shortest S-G path, by brute-force DFS over distance layers (an independent check)."""
    start = tuple(np.argwhere(grid == START)[0])
    goal = tuple(np.argwhere(grid == GOAL)[0])
    dist, _ = shortest_path_count(grid, start)
    paths = []

    def walk(cell, path):
        if cell == start:
            paths.append(path)
            return
        r, c = cell
        for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if 0 <= nr < grid.shape[0] and 0 <= nc < grid.shape[1]:
                if grid[nr, nc] != WALL and dist[nr, nc] == dist[cell] - 1:
                    walk((nr, nc), path + [(nr, nc)])

    walk(goal, [])
    return paths, int(dist[goal])


@pytest.mark.parametrize("size,min_path", [(9, 8), (15, 28)])
def test_generated_mazes_have_one_shortest_path_marked_in_the_target(size, min_path):
    table = generate(count=12, size=size, seed=1, min_path=min_path)
    assert table.num_rows == 12 and set(table.column("num_symbols").to_pylist()) == {5}
    for maze, solved in zip(grids(table, "input", size), grids(table, "target", size), strict=True):
        assert (maze[[0, -1], :] == WALL).all() and (maze[:, [0, -1]] == WALL).all()
        assert (maze == START).sum() == 1 and (maze == GOAL).sum() == 1
        paths, length = all_shortest_paths(maze)
        assert len(paths) == 1 and length >= min_path
        marked = {tuple(cell) for cell in np.argwhere(solved == PATH)}
        assert marked == {cell for cell in paths[0] if maze[cell] == OPEN}
        assert ((solved == maze) | (solved == PATH)).all()


def test_path_counting_sees_two_equal_routes():
    grid = np.full((5, 5), WALL)
    grid[1:4, 1:4] = OPEN  # a 3x3 room: many shortest routes corner to corner
    grid[1, 1], grid[3, 3] = START, GOAL
    _, ways = shortest_path_count(grid, (1, 1))
    assert ways[3, 3] == 2  # capped at 2: "more than one"
    assert solve_maze(grid) is None


def test_generation_is_deterministic_and_task_maze_works_offline():
    a = load_tasks("maze", count=6, size=9, seed=4)
    assert a.equals(load_tasks("maze", count=6, size=9, seed=4))
    assert not a.equals(load_tasks("maze", count=6, size=9, seed=5))
    assert set(a.column("split").to_pylist()) == {"train", "test"} or a.num_rows < 10


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(size=10), "odd size >= 5"),
        (dict(size=9, loops=1.5), "loops must be in"),
        (dict(size=9, min_path=500), "no 9x9 maze with a unique shortest path"),
    ],
)
def test_bad_generator_options(options, message):
    with pytest.raises(ValueError, match=message):
        generate(count=2, **options)


def maze_csv(tmp_path, rows, header="source,question,answer,rating"):
    path = tmp_path / "maze.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def hard_row(rating=3):
    """A 30x30 maze with one corridor from S to G, as the Maze-Hard CSV holds it."""
    q = [["#"] * 30 for _ in range(30)]
    a = [row[:] for row in q]
    for c in range(1, 29):
        q[1][c] = a[1][c] = " "
        a[1][c] = "o"
    q[1][1], q[1][28] = "S", "G"
    a[1][1], a[1][28] = "S", "G"
    return f"x,{''.join(map(''.join, q))},{''.join(map(''.join, a))},{rating}"


def test_maze_hard_csv_reads_with_ratings_and_sampling(tmp_path):
    path = maze_csv(tmp_path, [hard_row(1), hard_row(5), hard_row(7)])
    table = load_source("maze", input=str(path))
    assert table.num_rows == 3 and set(table.column("height").to_pylist()) == {30}
    assert load_source("maze", input=str(path), min_rating=5).num_rows == 2
    assert load_source("maze", input=str(path), count=1, seed=2).num_rows == 1
    maze = grids(table, "input", 30)[0]
    assert "".join(CHARS[v] for v in maze[1]) == "#S" + " " * 26 + "G#"
    assert table.column("task_id")[0].as_py() == "maze-csv/maze/2"


def test_maze_hard_csv_errors_name_the_line(tmp_path):
    good = hard_row()
    bad_char = good.replace("S", "X", 1)
    short = "x,# ,# ,1"
    path = maze_csv(tmp_path, [good, bad_char, short])
    with pytest.raises(TaskFileError) as err:
        load_source("maze", input=str(path))
    text = str(err.value)
    assert "maze.csv: 3 problems" in text
    assert "row 1 (line 3), field 'question': unexpected character(s) 'X'" in text
    assert "row 2 (line 4), field 'question': expected 900 characters, got 2" in text
    with pytest.raises(TaskFileError, match="expected the header"):
        load_source("maze", input=str(maze_csv(tmp_path, [good], header="q,a")))
    wall_opened = good.split(",")
    wall_opened[2] = " " + wall_opened[2][1:]
    with pytest.raises(TaskFileError, match=r"line 2, field 'answer': cell \(0, 0\) is ' '"):
        load_source("maze", input=str(maze_csv(tmp_path, [",".join(wall_opened)])))
