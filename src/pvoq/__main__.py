from pvoq.cli.main import main

main()
