from bulksend.cli.main import main

main()
