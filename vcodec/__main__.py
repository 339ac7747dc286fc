from vcodec.cli import program

program()
