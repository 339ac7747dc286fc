from vcodec.cli import main

main()
