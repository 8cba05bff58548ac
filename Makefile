# The two commands of the README, and a few conveniences around them.
.PHONY: demo test lint stack-up stack-down

demo:  ## build and start the local stack, then run the demo
	bash scripts/demo.sh

test:  ## install, start the stack, lint and run all tests
	bash scripts/test.sh

lint:
	bash scripts/bootstrap.sh && .venv/bin/ruff check . && .venv/bin/ruff format --check .

stack-up:
	bash scripts/bootstrap.sh && .venv/bin/fink-stack up

stack-down:
	.venv/bin/fink-stack down
