from scheduler.loop import main

main()
