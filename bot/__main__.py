from bot.programs.main import main

# Guarded: the link check's parser process (spawned) imports the main module again.
if __name__ == "__main__":
    main()
