from aetherd.cli import main

main()
