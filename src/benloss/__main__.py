from benloss.cli import main

main()
