from aether.cli.main import main

main()
