from balance_check.cli import main

raise SystemExit(main())
