from flywheel_runtime.cli import main

raise SystemExit(main())
