# The two quick-start commands, and the benchmarks. Every target runs the idempotent set-up first.
.PHONY: setup demo test bench docs

setup:
	bash scripts/setup.sh

demo: setup
	medrobot run --domain surgery --yes "pick up the needle with the right arm and lift it 2 cm"

test: setup
	bash scripts/test.sh

bench: setup
	python3 ../shared/benchmarks/score_plans.py ../shared/benchmarks/plans-dev.jsonl
	python3 ../shared/benchmarks/score_plans.py benchmarks/heldout/plans-heldout.jsonl
	python3 benchmarks/plan_latency.py
	python3 benchmarks/voice_accuracy.py --workers 2

docs:
	python3 scripts/gen_docs.py
