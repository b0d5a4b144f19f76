from mercato.cli.main import main

main()
