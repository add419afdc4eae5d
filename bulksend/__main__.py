from bulksend.cli.commands import main

main()
