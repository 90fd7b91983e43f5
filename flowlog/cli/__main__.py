from flowlog.cli import main

main()
