"""Maze-Hard generation rate (target: ≥ 2000 30×30 mazes with shortest path > 110 per minute on
2 cores; a naive pure-Python BFS loop manages ≈170). Reported in extra_info, not asserted as time."""
from tasks._maze_generator import generate, generate_perfect

COUNT = 200


def test_maze_hard_generation_rate(benchmark):
    generate(2, grid=30, min_path=110, wall_min=0.3, wall_max=0.5, seed=0)  # compile outside the timing
    seeds = iter(range(1, 1000))
    result = benchmark.pedantic(lambda: generate(COUNT, grid=30, min_path=110, wall_min=0.3, wall_max=0.5,
                                                 seed=next(seeds)), rounds=3, iterations=1)
    benchmark.group = "data-generation"
    per_minute = COUNT / benchmark.stats.stats.median * 60
    benchmark.extra_info.update(mazes_per_minute=per_minute, layouts_drawn=int(result["drawn"]),
                                acceptance_rate=COUNT / int(result["drawn"]))
    print(f"\nMaze-Hard 30×30 (> 110 moves): {per_minute:,.0f} per minute on one core")
    assert (result["lengths"] > 110).all() and len(result["questions"]) == COUNT


def test_perfect_maze_generation_rate(benchmark):
    """DeepThinking's perfect mazes (task.kind=perfect) at the extrapolation study's largest grid, 33×33."""
    generate_perfect(2, grid=33, seed=0)  # compile outside the timing
    seeds = iter(range(1, 1000))
    result = benchmark.pedantic(lambda: generate_perfect(1000, grid=33, seed=next(seeds)), rounds=3, iterations=1)
    benchmark.group = "data-generation"
    per_second = 1000 / benchmark.stats.stats.median
    benchmark.extra_info.update(mazes_per_second=per_second)
    print(f"\nperfect 33×33 mazes: {per_second:,.0f} per second on one core")
    assert len(result["questions"]) == 1000 and (result["lengths"] >= 2).all()
