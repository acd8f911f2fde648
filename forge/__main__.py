from forge.cli import main

raise SystemExit(main())
